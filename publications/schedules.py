"""The django-q2 schedules that keep the registry current without anyone asking.

Each dataset gets an incremental `sync_state` every DMSUPDATE["SYNC_MINUTES"]
minutes and a full one a day (the full run is what finds keys gone missing and
late arrivals written below the cursor), and GC runs daily. Kept in step by
signals on Dataset and after every migrate. (The jobs app schedules its
stale-job sweep, the operations app the daily backup.)
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django_q.models import Schedule

SYNC_TASK = "publications.tasks.sync_state_task"
GC_TASK = "publications.tasks.gc_task"


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
    """Every dataset's sync schedules, and the daily GC of every dataset."""
    from publications.models import Dataset

    for dataset in Dataset.objects.all():
        ensure_dataset_schedules(dataset)
    Schedule.objects.update_or_create(
        func=GC_TASK, defaults={"name": "gc", "schedule_type": Schedule.DAILY, "repeats": -1}
    )
