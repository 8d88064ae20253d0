"""The notifications app's django-q2 schedule: a sweep every minute (retries due, states changed by time)."""

from __future__ import annotations

from django_q.models import Schedule

SWEEP_TASK = "notifications.tasks.sweep_task"


def ensure_schedules() -> None:
    Schedule.objects.update_or_create(
        func=SWEEP_TASK,
        defaults={"name": "webhooks", "schedule_type": Schedule.MINUTES, "minutes": 1, "repeats": -1},
    )
