from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Background jobs"

    def ready(self) -> None:
        from dmsupdate.schedules import after_migrate
        from jobs.schedules import ensure_schedules

        # Each app's `jobs` module registers its runners (jobs.registry.runs).
        autodiscover_modules("jobs")
        after_migrate(self, ensure_schedules)
