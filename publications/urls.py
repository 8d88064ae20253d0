"""Dashboard URLs of the registry, and of the dataset operations (GC, image builds) started from the jobs page."""

from django.urls import path

from publications import views

urlpatterns = [
    path("publications/", views.publications_page, name="publications"),
    path("objects/", views.objects_page, name="objects"),
    path("jobs/gc/", views.gc_start, name="gc-start"),
    path("jobs/build-image/", views.build_image_start, name="build-image-start"),
]
