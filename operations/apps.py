from django.apps import AppConfig


class OperationsConfig(AppConfig):
    """What spans the domain apps: registry backup and restore, the demo, metrics, error pages."""

    name = "operations"
    verbose_name = "Operations"

    def ready(self) -> None:
        from dmsupdate.postgres import configure_connections
        from dmsupdate.schedules import after_migrate
        from operations.schedules import ensure_schedules

        after_migrate(self, ensure_schedules)
        configure_connections()
