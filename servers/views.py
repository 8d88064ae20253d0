"""Dashboard pages of the fleet: the fleet overview, one server, and its actions."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.loader import render_to_string
from django.utils import timezone

from audit.services import actor_name
from dmsupdate import views as project_views
from dmsupdate.web import operator_action, operator_required, page, text_param, viewer_required
from jobs.models import Job, JobKind, JobStatus
from jobs.services import start_job
from servers.dashboard import fleet, lag_history
from servers.models import Server, ServerState
from servers.services import lag_for, missing_needed

# Seconds between refreshes of the fleet table (htmx polling).
FLEET_REFRESH_SECONDS = 5


def _fleet_context(request: HttpRequest) -> dict:
    state = request.GET.get("state", "")
    if state not in ServerState.values:
        state = ""
    dataset = text_param(request.GET, "dataset", 64)
    return {
        "sections": fleet(state=state, dataset=dataset),
        "state": state,
        "dataset": dataset,
        "states": ServerState.values,
        "refresh_seconds": FLEET_REFRESH_SECONDS,
        "query": request.GET.urlencode(),
    }


@viewer_required
def fleet_page(request: HttpRequest) -> HttpResponse:
    """Home page: every dataset's head and every server's state, lag and 24 h lag history."""
    return page(request, "servers/fleet.html", _fleet_context(request))


@viewer_required
def fleet_rows(request: HttpRequest) -> HttpResponse:
    """The fleet table alone, polled by the fleet page to refresh without a reload."""
    return page(request, "servers/_fleet.html", _fleet_context(request))


def _server_context(server: Server) -> dict:
    now = timezone.now()
    lag = lag_for(server)
    return {
        "server": server,
        "lag": lag,
        "missing_keys": list(missing_needed(server).values_list("key", flat=True)[:20])
        if lag.missing_updates
        else [],
        "spark": lag_history([server.pk], now).get(server.pk, []),
        "active_job": server.jobs.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING])
        .order_by("-created_at")
        .first(),
    }


def _history_context(server: Server) -> dict:
    return {
        "server": server,
        "reports": server.reports.order_by("-received_at")[:50],
        "runs": server.runs.select_related("requested_by").order_by("-started_at")[:50],
    }


@viewer_required
def server_page(request: HttpRequest, name: str) -> HttpResponse:
    """One server: state, lag, status history, update runs, and (for operators) Update now / Rebuild."""
    server = get_object_or_404(Server.objects.select_related("dataset"), name=name)
    return page(request, "servers/server.html", {**_server_context(server), **_history_context(server)})


@viewer_required
def server_history(request: HttpRequest, name: str) -> HttpResponse:
    """The server page's runs and reports alone (refreshed when a job ends, and now and then)."""
    server = get_object_or_404(Server, name=name)
    return page(request, "servers/_server_history.html", _history_context(server))


@viewer_required
def server_status(request: HttpRequest, name: str) -> HttpResponse:
    """The server page's status block alone (polled, and refreshed when its job ends)."""
    server = get_object_or_404(Server.objects.select_related("dataset"), name=name)
    return page(request, "servers/_server_status.html", _server_context(server))


def _job_started(request: HttpRequest, server: Server, job: Job) -> HttpResponse:
    if request.headers.get("HX-Request"):
        return page(request, "jobs/_job.html", {"job": job, "watch": True})
    return redirect("server", name=server.name)


@operator_action
def server_update(request: HttpRequest, name: str) -> HttpResponse:
    """Update now: start an update job on the server's agent."""
    server = get_object_or_404(Server, name=name)
    job = start_job(JobKind.UPDATE, server=server, user=request.user, actor=actor_name(request.user))
    return _job_started(request, server, job)


@operator_required
def server_rebuild(request: HttpRequest, name: str) -> HttpResponse:
    """Rebuild: GET shows what will happen and asks to confirm; POST starts the rebuild job."""
    server = get_object_or_404(Server.objects.select_related("dataset"), name=name)
    if request.method != "POST":
        return page(request, "servers/rebuild_confirm.html", {"server": server})
    if request.POST.get("confirm") != "yes":
        return page(
            request,
            "servers/rebuild_confirm.html",
            {"server": server, "error": "tick the confirmation to rebuild"},
            status=400,
        )
    Server.objects.filter(pk=server.pk).update(rebuild_requested_at=timezone.now())
    job = start_job(JobKind.REBUILD, server=server, user=request.user, actor=actor_name(request.user))
    return _job_started(request, server, job)


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """404: JSON for the API, a page with a way home for everything else."""
    if _wants_json(request):
        return project_views.not_found(request, exception)
    body = render_to_string("404.html", {"path": request.path}, request=request)
    return HttpResponse(body, status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    """500: JSON for the API, a plain page (no traceback, the request id) for everything else."""
    if _wants_json(request):
        return project_views.server_error(request)
    # Rendered without context processors: whatever failed may fail again in them.
    body = render_to_string("500.html", {"request_id": getattr(request, "request_id", "")})
    return HttpResponse(body, status=500)


def forbidden(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """403: JSON for the API, a page saying why for everything else."""
    if _wants_json(request):
        return JsonResponse({"error": "forbidden", "detail": "you may not do this"}, status=403)
    body = render_to_string("403.html", {"reason": str(exception or "")}, request=request)
    return HttpResponse(body, status=403)
