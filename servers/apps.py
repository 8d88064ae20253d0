from django.apps import AppConfig


class ServersConfig(AppConfig):
    name = "servers"
    verbose_name = "Data servers"

    def ready(self) -> None:
        from publications import replicas
        from publications.signals import update_published
        from servers.services import replicas as server_replicas
        from servers.services import trigger_after_publication

        # Publications sits below servers: it learns of servers through these two hooks.
        replicas.provide(server_replicas)
        update_published.connect(trigger_after_publication, dispatch_uid="servers.trigger_after_publication")
