"""Job runners of the publications app: sync_state, GC and image builds."""

from __future__ import annotations

from typing import Any

from audit.services import record
from jobs.models import Job, JobKind
from jobs.registry import runs
from jobs.services import JobFailed, progress
from publications.gc import collect, summarize
from publications.images import ImageBuildError, build_image
from publications.models import Dataset
from publications.reconcile import BATCH
from publications.sync import SyncError, SyncResult, sync_dataset


@runs(JobKind.SYNC_STATE)
def run_sync_job(job: Job) -> dict[str, Any]:
    """Sync the job's dataset (param `full`), reporting progress per batch."""
    if job.dataset is None:
        raise JobFailed("a sync_state job needs a dataset")
    full = bool(job.params.get("full"))

    def report(result: SyncResult) -> None:
        # The total is unknown until the listing ends: show keys seen, creep towards 99 %.
        progress(job, min(99, result.listed // BATCH + 1), f"{result.listed} keys listed")

    try:
        result = sync_dataset(job.dataset, full=full, on_batch=report)
    except SyncError as exc:
        raise JobFailed(str(exc)) from exc
    return result.as_dict()


@runs(JobKind.GC)
def run_gc_job(job: Job) -> dict[str, Any]:
    """GC of the job's dataset or every dataset: params `dry_run`, `force`."""
    params = job.params or {}
    dry_run, force = bool(params.get("dry_run")), bool(params.get("force"))
    datasets = [job.dataset] if job.dataset_id else list(Dataset.objects.order_by("name"))
    entries: dict[str, dict] = {}
    for n, dataset in enumerate(datasets):
        progress(job, int(100 * n / max(1, len(datasets))), f"collecting {dataset.name}")

        def on_batch(done: int, total: int, name=dataset.name, n=n) -> None:
            share = 100 / max(1, len(datasets))
            progress(job, int(share * n + share * done / max(1, total)), f"{name}: {done} of {total} deleted")

        entries[dataset.name] = collect(
            dataset, dry_run=dry_run, force=force, actor=job.actor or "system", on_batch=on_batch
        )
    result = {"datasets": entries, "summary": summarize(entries)}
    if any(e.get("failed") or e.get("error") for e in entries.values()):
        raise JobFailed(result["summary"], result)
    return result


@runs(JobKind.BUILD_IMAGE)
def run_build_image_job(job: Job) -> dict[str, Any]:
    """Build an image of the job's dataset (param `force`)."""
    if job.dataset is None:
        raise JobFailed("a build_image job needs a dataset")
    try:
        return build_image(
            job.dataset, actor=job.actor or "system", job=job, force=bool((job.params or {}).get("force"))
        )
    except ImageBuildError as exc:
        record(job.actor or "system", "image.failed", job.dataset.name, {"error": str(exc)})
        raise JobFailed(str(exc)) from exc
