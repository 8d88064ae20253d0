"""Connects an app's `ensure_schedules` to every migrate (django-q2's Schedule rows follow the code)."""

from __future__ import annotations

from collections.abc import Callable

from django.apps import AppConfig
from django.db import connections
from django.db.models.signals import post_migrate


def after_migrate(app: AppConfig, ensure: Callable[[], None]) -> None:
    """Run `ensure` after each migrate of `app`, once django_q's tables exist."""

    def migrated(sender, using: str = "default", **kwargs) -> None:
        # A partial migrate (one app) may run before django_q's tables exist.
        if "django_q_schedule" in connections[using].introspection.table_names():
            ensure()

    post_migrate.connect(migrated, sender=app, weak=False, dispatch_uid=f"{app.name}.schedules.migrated")
