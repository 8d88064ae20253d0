"""django-q2 entry points for publications: thin, they load by id and call a service."""

from __future__ import annotations

from jobs.models import JobKind
from jobs.services import start_job
from publications.models import Dataset
from publications.sync import sync_dataset


def sync_state_task(dataset_id: int, full: bool = False) -> dict:
    """Scheduled reconcile of one dataset (see publications.schedules); returns the result."""
    dataset = Dataset.objects.filter(pk=dataset_id).first()
    if dataset is None:
        return {"summary": f"dataset #{dataset_id} no longer exists"}
    return sync_dataset(dataset, full=full).as_dict()


def gc_task() -> dict:
    """Scheduled GC of every dataset, as a job (row, progress, audit); returns its result."""
    return start_job(JobKind.GC, actor="schedule", run_now=True).result
