from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save, pre_save


class PublicationsConfig(AppConfig):
    name = "publications"
    verbose_name = "Datasets and publications"

    def ready(self) -> None:
        from dmsupdate.schedules import after_migrate
        from publications.models import Dataset
        from publications.schedules import ensure_schedules

        pre_save.connect(_root_changing, sender=Dataset, dispatch_uid="publications.sync.root_changing")
        post_save.connect(_dataset_saved, sender=Dataset, dispatch_uid="publications.schedules.saved")
        post_delete.connect(_dataset_deleted, sender=Dataset, dispatch_uid="publications.schedules.deleted")
        after_migrate(self, ensure_schedules)


def _root_changing(sender, instance, **kwargs) -> None:
    """A new state root starts its sync from scratch: the old cursor means nothing there."""
    if instance.pk is None or kwargs.get("raw"):
        return
    old = sender._default_manager.filter(pk=instance.pk).values("s3root", "s3endpoint").first()
    if old and (old["s3root"], old["s3endpoint"]) != (instance.s3root, instance.s3endpoint):
        instance.sync_cursor = ""


def _dataset_saved(sender, instance, **kwargs) -> None:
    if kwargs.get("raw"):
        return  # loaddata / registry restore: the post-migrate pass or the next save covers it
    from publications.schedules import ensure_dataset_schedules

    ensure_dataset_schedules(instance)


def _dataset_deleted(sender, instance, **kwargs) -> None:
    from publications.schedules import remove_dataset_schedules

    remove_dataset_schedules(instance.pk)
