"""Dashboard URLs of the fleet and its servers."""

from django.urls import path

from servers import views

urlpatterns = [
    path("", views.fleet_page, name="fleet"),
    path("fleet/rows", views.fleet_rows, name="fleet-rows"),
    path("servers/<str:name>/", views.server_page, name="server"),
    path("servers/<str:name>/status", views.server_status, name="server-status"),
    path("servers/<str:name>/history", views.server_history, name="server-history"),
    path("servers/<str:name>/update", views.server_update, name="server-update"),
    path("servers/<str:name>/rebuild", views.server_rebuild, name="server-rebuild"),
]
