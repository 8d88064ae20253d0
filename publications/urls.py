"""Dashboard URLs of the registry."""

from django.urls import path

from publications import views

urlpatterns = [
    path("publications/", views.publications_page, name="publications"),
    path("objects/", views.objects_page, name="objects"),
]
