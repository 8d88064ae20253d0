"""The django-q2 schedules that keep the registry current without anyone asking.

Each dataset gets an incremental `sync_state` every DMSUPDATE["SYNC_MINUTES"]
minutes and a full one a day (the full run is what finds keys gone missing and
late arrivals written below the cursor). One more schedule fails jobs whose
worker died. Kept in step by signals on Dataset and after every migrate.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django_q.models import Schedule

SYNC_TASK = "publications.tasks.sync_state_task"
STALE_JOBS_TASK = "jobs.tasks.fail_stale_jobs_task"
GC_TASK = "publications.tasks.gc_task"
BACKUP_TASK = "publications.tasks.backup_task"


def ensure_dataset_schedules(dataset) -> None:
    """Create or update the incremental and daily full sync schedules of one dataset."""
    minutes = max(1, int(settings.DMSUPDATE["SYNC_MINUTES"]))
    for full, name, kind, every in (
        (False, f"sync_state {dataset.name}", Schedule.MINUTES, minutes),
        (True, f"sync_state --full {dataset.name}", Schedule.DAILY, None),
    ):
        # Found by function and arguments, so renaming the dataset renames its schedules.
        schedule = Schedule.objects.filter(
            func=SYNC_TASK, args=repr(dataset.pk), kwargs=f"full={full}"
        ).first()
        if schedule is None:
            # Spread the daily full runs of many datasets over the hour.
            first = timezone.now() + timedelta(minutes=minutes if not full else 60 + dataset.pk % 60)
            schedule = Schedule(func=SYNC_TASK, args=repr(dataset.pk), kwargs=f"full={full}", next_run=first)
        schedule.name = name[:100]
        schedule.schedule_type = kind
        schedule.minutes = every
        schedule.repeats = -1
        schedule.save()


def remove_dataset_schedules(dataset_id: int) -> None:
    """Drop the sync schedules of a deleted dataset."""
    Schedule.objects.filter(func=SYNC_TASK, args=repr(dataset_id)).delete()


def ensure_schedules() -> None:
    """Every dataset's sync schedules, and the stale-job sweep every few minutes."""
    from publications.models import Dataset

    for dataset in Dataset.objects.all():
        ensure_dataset_schedules(dataset)
    Schedule.objects.update_or_create(
        func=STALE_JOBS_TASK,
        defaults={"name": "fail stale jobs", "schedule_type": Schedule.MINUTES, "minutes": 5, "repeats": -1},
    )
    # A daily backup and a daily GC: with the default 48 h grace period, every expired
    # object is in at least two backups before GC deletes it.
    for func, name in ((BACKUP_TASK, "backup_registry"), (GC_TASK, "gc")):
        Schedule.objects.update_or_create(
            func=func, defaults={"name": name, "schedule_type": Schedule.DAILY, "repeats": -1}
        )
