from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications (webhooks)"

    def ready(self) -> None:
        from dmsupdate.schedules import after_migrate
        from jobs.signals import job_finished
        from notifications import receivers
        from notifications.schedules import ensure_schedules
        from servers.signals import server_changed

        server_changed.connect(receivers.server_changed, dispatch_uid="notifications.server_changed")
        job_finished.connect(receivers.job_finished, dispatch_uid="notifications.job_finished")
        after_migrate(self, ensure_schedules)
