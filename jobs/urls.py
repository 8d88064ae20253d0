"""Dashboard URLs of background jobs."""

from django.urls import path

from jobs import views

urlpatterns = [
    path("jobs/", views.jobs_page, name="jobs"),
    path("jobs/<int:pk>/", views.job_page, name="job"),
    path("jobs/<int:pk>/progress", views.job_partial, name="job-partial"),
]
