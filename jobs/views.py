"""Dashboard pages of background jobs: running and recent jobs, one job live, GC and image builds."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect

from audit.services import actor_name
from dmsupdate.web import int_param, operator_action, page, viewer_required
from jobs.models import Job, JobKind, JobStatus
from jobs.services import start_job
from publications.models import Dataset

RECENT_JOBS = 50


@viewer_required
def jobs_page(request: HttpRequest) -> HttpResponse:
    """Running and recent jobs with their progress; GC and Build image for operators."""
    jobs = Job.objects.select_related("dataset", "server")
    return page(
        request,
        "jobs/jobs.html",
        {
            "active": list(
                jobs.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).order_by("-created_at")[:100]
            ),
            "recent": list(
                jobs.filter(status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED]).order_by("-created_at")[
                    :RECENT_JOBS
                ]
            ),
            "datasets": list(Dataset.objects.order_by("name")),
        },
    )


def _gc_dry_run_of(job: Job) -> bool:
    return job.kind == JobKind.GC and job.params.get("dry_run") is True


@viewer_required
def job_page(request: HttpRequest, pk: int) -> HttpResponse:
    """One job: progress (live while it runs), error, full result; a succeeded GC dry run offers the real GC."""
    job = get_object_or_404(Job.objects.select_related("dataset", "server", "requested_by"), pk=pk)
    return page(
        request,
        "jobs/job.html",
        {"job": job, "offer_gc": _gc_dry_run_of(job) and job.status == JobStatus.SUCCEEDED},
    )


@viewer_required
def job_partial(request: HttpRequest, pk: int) -> HttpResponse:
    """A job's progress block, polled while the job runs; tells the page when it has finished."""
    job = get_object_or_404(Job.objects.select_related("dataset", "server"), pk=pk)
    response = page(request, "jobs/_job.html", {"job": job, "watch": True})
    if job.finished:
        # Lets the server page refresh its status block as soon as the job ends.
        response["HX-Trigger"] = "job-finished"
    return response


@operator_action
def gc_start(request: HttpRequest) -> HttpResponse:
    """GC in two steps: without a dry-run job, start a dry run; with a succeeded one and confirmation, delete."""
    dataset = get_object_or_404(Dataset, pk=int_param(request.POST.get("dataset")) or 0)
    dry_run_id = request.POST.get("dry_run_job")
    if not dry_run_id:
        job = start_job(
            JobKind.GC,
            dataset=dataset,
            params={"dry_run": True},
            user=request.user,
            actor=actor_name(request.user),
        )
        return redirect("job", pk=job.pk)
    dry_run = Job.objects.filter(pk=int_param(dry_run_id) or 0).first()
    problem = ""
    if dry_run is None or not _gc_dry_run_of(dry_run) or dry_run.dataset_id != dataset.pk:
        problem = "the confirmation does not refer to a GC dry run of this dataset"
    elif dry_run.status != JobStatus.SUCCEEDED:
        problem = "the dry run has not succeeded; run a new one first"
    elif request.POST.get("confirm") != "yes":
        problem = "tick the confirmation to delete the objects listed by the dry run"
    if problem:
        context = {
            "job": dry_run,
            "offer_gc": dry_run is not None and _gc_dry_run_of(dry_run),
            "error": problem,
        }
        if dry_run is None:
            return page(request, "jobs/gc_refused.html", {"error": problem, "dataset": dataset}, status=400)
        return page(request, "jobs/job.html", context, status=400)
    job = start_job(
        JobKind.GC,
        dataset=dataset,
        params={"dry_run": False, "dry_run_job": dry_run.pk},
        user=request.user,
        actor=actor_name(request.user),
    )
    return redirect("job", pk=job.pk)


@operator_action
def build_image_start(request: HttpRequest) -> HttpResponse:
    """Build a new image of a dataset from its newest image and the updates after it."""
    dataset = get_object_or_404(Dataset, pk=int_param(request.POST.get("dataset")) or 0)
    job = start_job(JobKind.BUILD_IMAGE, dataset=dataset, user=request.user, actor=actor_name(request.user))
    return redirect("job", pk=job.pk)
