"""Dashboard pages of background jobs: running and recent jobs, and one job live."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404

from accounts.access import page, viewer_required
from jobs.models import Job, JobStatus

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
        },
    )


@viewer_required
def job_page(request: HttpRequest, pk: int) -> HttpResponse:
    """One job, followed live to its end: times, progress, per-server results or the result, errors;
    a succeeded GC dry run offers the real GC."""
    job = get_object_or_404(Job.objects.select_related("dataset", "server", "requested_by"), pk=pk)
    return page(
        request,
        "jobs/job.html",
        {"job": job, "offer_gc": job.is_gc_dry_run and job.status == JobStatus.SUCCEEDED},
    )


@viewer_required
def job_partial(request: HttpRequest, pk: int) -> HttpResponse:
    """A job's block, polled while the job runs (its page's times, per-server table and result too,
    unless `compact`); when the job has ended it tells the page, which refreshes what the job changed."""
    job = get_object_or_404(Job.objects.select_related("dataset", "server"), pk=pk)
    compact = request.GET.get("compact") == "1"
    response = page(request, "jobs/_job.html", {"job": job, "watch": True, "compact": compact})
    if job.finished:
        # Lets the server page refresh its status block as soon as the job ends.
        response["HX-Trigger"] = "job-finished"
    return response
