"""URL map: every app's dashboard pages and REST API v1, the admin, health check, metrics and error pages."""

from django.contrib import admin
from django.http import HttpResponsePermanentRedirect
from django.templatetags.static import static
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from operations import metrics, views

api_v1 = [
    path("", include("publications.api.urls")),
    path("", include("servers.api.urls")),
    path("", include("jobs.api.urls")),
    path("", include("audit.api.urls")),
    path("", include("notifications.api.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
]

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    # Browsers ask for /favicon.ico whatever the page says (resolved per request: the static
    # manifest exists only once collectstatic has run).
    path("favicon.ico", lambda request: HttpResponsePermanentRedirect(static("favicon.ico"))),
    path("metrics", metrics.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    re_path(r"^api/", views.not_found),  # JSON 404 for any other /api/ path, in debug mode too
    path("", include("servers.urls")),
    path("", include("accounts.urls")),
    path("", include("publications.urls")),
    path("", include("jobs.urls")),
    path("", include("audit.urls")),
    path("", include("notifications.urls")),
]

# JSON for /api/, HTML pages for the dashboard.
handler403 = "operations.views.forbidden"
handler404 = "operations.views.not_found"
handler500 = "operations.views.server_error"
