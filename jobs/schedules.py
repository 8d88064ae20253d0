"""The jobs app's own schedule: fail jobs whose worker died (no heartbeat) every few minutes."""

from __future__ import annotations

from django_q.models import Schedule

STALE_JOBS_TASK = "jobs.tasks.fail_stale_jobs_task"


def ensure_schedules() -> None:
    """Create or refresh the stale-job sweep."""
    Schedule.objects.update_or_create(
        func=STALE_JOBS_TASK,
        defaults={"name": "fail stale jobs", "schedule_type": Schedule.MINUTES, "minutes": 5, "repeats": -1},
    )
