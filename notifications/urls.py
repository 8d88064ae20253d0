"""Dashboard URLs of the webhooks page."""

from django.urls import path

from notifications import views

urlpatterns = [
    path("webhooks/", views.webhooks_page, name="webhooks"),
    path("webhooks/add", views.webhook_add, name="webhook-add"),
    path("webhooks/<int:pk>/delete", views.webhook_delete, name="webhook-delete"),
]
