"""The operations app's schedule: a daily registry backup."""

from __future__ import annotations

from django_q.models import Schedule

BACKUP_TASK = "operations.tasks.backup_task"


def ensure_schedules() -> None:
    """Create or refresh the daily backup.

    With GC's default 48 h grace period, every expired object is in at least two
    backups before GC deletes it.
    """
    # Written by versions that kept the backup in the publications app.
    Schedule.objects.filter(func="publications.tasks.backup_task").delete()
    Schedule.objects.update_or_create(
        func=BACKUP_TASK, defaults={"name": "backup_registry", "schedule_type": Schedule.DAILY, "repeats": -1}
    )
