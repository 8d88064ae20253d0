"""Dashboard URLs of the audit log."""

from django.urls import path

from audit import views

urlpatterns = [path("audit/", views.audit_page, name="audit")]
