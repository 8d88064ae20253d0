from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save, pre_delete, pre_save


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
        pre_delete.connect(_note_scoped_tokens, sender=Dataset, dispatch_uid="publications.tokens.noted")
        post_delete.connect(
            _revoke_emptied_tokens, sender=Dataset, dispatch_uid="publications.tokens.revoked"
        )
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


def _note_scoped_tokens(sender, instance, **kwargs) -> None:
    """Before a dataset goes: the live tokens limited to it (its scope rows go with it)."""
    from accounts.models import ApiToken

    instance._scoped_token_ids = list(
        ApiToken.objects.filter(datasets=instance, revoked_at__isnull=True).values_list("pk", flat=True)
    )


def _revoke_emptied_tokens(sender, instance, **kwargs) -> None:
    """After it went: tokens it leaves limited to no dataset are revoked, never widened to all (audited)."""
    from django.utils import timezone

    from accounts.models import ApiToken
    from audit.services import record

    for name in ApiToken.revoke_unscoped(getattr(instance, "_scoped_token_ids", []), timezone.now()):
        record("system", "token.revoked", name, {"reason": f"its only dataset {instance.name!r} was deleted"})
