"""Dashboard URLs of the fleet, its servers, their actions, and where each publication has been applied."""

from django.urls import path

from servers import actions, publication_page, views

urlpatterns = [
    path("", views.fleet_page, name="fleet"),
    path("fleet/rows", views.fleet_rows, name="fleet-rows"),
    path("fleet/actions", actions.servers_action, name="servers-action"),
    path("datasets/<str:name>/update-all", actions.dataset_update_all, name="dataset-update-all"),
    path("publications/<int:pk>/", publication_page.publication_page, name="publication"),
    path("servers/<str:name>/", views.server_page, name="server"),
    path("servers/<str:name>/status", views.server_status, name="server-status"),
    path("servers/<str:name>/history", views.server_history, name="server-history"),
    path("servers/<str:name>/update", actions.server_update, name="server-update"),
    path("servers/<str:name>/rebuild", actions.server_rebuild, name="server-rebuild"),
]
