"""Dashboard pages of the fleet: the fleet overview, one server, and its actions."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone

from accounts.access import operator_action, operator_required, page, viewer_required
from audit.services import actor_name
from dmsupdate.errors import DomainError
from dmsupdate.web import text_param
from jobs.models import JobKind, JobStatus
from servers.dashboard import fleet, lag_history
from servers.lag import lag_for, missing_needed
from servers.models import RunTrigger, Server, ServerState
from servers.services import request_run

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


def _run(request: HttpRequest, server: Server, kind: str) -> HttpResponse:
    """Start the job (servers.services.request_run) and show it; a refusal is shown as the page's error."""
    try:
        job = request_run(server, kind, request.user, actor_name(request.user), RunTrigger.MANUAL)
    except DomainError as exc:
        return HttpResponse(exc.detail, status=409, content_type="text/plain; charset=utf-8")
    if request.headers.get("HX-Request"):
        return page(request, "jobs/_job.html", {"job": job, "watch": True})
    return redirect("server", name=server.name)


@operator_action
def server_update(request: HttpRequest, name: str) -> HttpResponse:
    """Update now: start an update job on the server's agent."""
    server = get_object_or_404(Server.objects.select_related("dataset"), name=name)
    return _run(request, server, JobKind.UPDATE)


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
    return _run(request, server, JobKind.REBUILD)
