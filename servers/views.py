"""Dashboard pages of the fleet: the fleet overview, one server, and where a publication has been applied."""

from __future__ import annotations

from datetime import UTC, datetime

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone

from accounts.access import page, viewer_required
from dmsupdate.state.status import InvalidStatus, parse_status
from dmsupdate.web import int_param, text_param
from jobs.models import JobStatus
from servers.charts import RANGES, LagPoint, lag_chart
from servers.dashboard import SECTION_ROWS, SORTS, fleet
from servers.lag import lag_for, missing_needed
from servers.models import LagHour, Server, ServerState, StatusReport

# Seconds between refreshes of the fleet table (htmx polling).
FLEET_REFRESH_SECONDS = 5


def _fleet_context(request: HttpRequest) -> dict:
    state = request.GET.get("state", "")
    if state not in ServerState.values:
        state = ""
    sort = request.GET.get("sort", "name")
    if sort not in SORTS:
        sort = "name"
    dataset = text_param(request.GET, "dataset", 64)
    search = text_param(request.GET, "q", 128)
    number = int_param(request.GET.get("page")) or 1
    return {
        "sections": fleet(state=state, dataset=dataset, search=search, sort=sort, page=number),
        "state": state,
        "dataset": dataset,
        "search": search,
        "sort": sort,
        "sorts": SORTS,
        "page": number,
        "section_rows": SECTION_ROWS,
        "states": ServerState.values,
        "refresh_seconds": FLEET_REFRESH_SECONDS,
        "query": request.GET.urlencode(),
    }


@viewer_required
def fleet_page(request: HttpRequest) -> HttpResponse:
    """Home page: every dataset's head, actions and servers (state, lag, 24 h lag), searchable and sortable."""
    return page(request, "servers/fleet.html", _fleet_context(request))


@viewer_required
def fleet_rows(request: HttpRequest) -> HttpResponse:
    """The fleet table alone, polled by the fleet page (and fetched by its search box) without a reload."""
    return page(request, "servers/_fleet.html", _fleet_context(request))


def agent_facts(server: Server) -> dict:
    """What the agent's last report says of itself: version, store, the last run's skipped keys."""
    body = (
        StatusReport.objects.filter(server=server, reachable=True)
        .order_by("-received_at")
        .values_list("body", flat=True)
        .first()
    )
    try:
        status = parse_status(body or {})
    except InvalidStatus:
        status = parse_status({})
    return {
        "agent_version": status.agent_version,
        "store": status.store or {},
        "last_skipped": status.skipped,
    }


def _server_context(server: Server) -> dict:
    lag = lag_for(server)
    return {
        "server": server,
        "lag": lag,
        "missing_keys": list(missing_needed(server).values_list("key", flat=True)[:20])
        if lag.missing_updates
        else [],
        "active_job": server.jobs.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING])
        .order_by("-created_at")
        .first(),
        **agent_facts(server),
    }


def _history_context(server: Server) -> dict:
    return {
        "server": server,
        "reports": server.reports.order_by("-received_at")[:50],
        "runs": server.runs.select_related("requested_by").order_by("-started_at")[:50],
    }


def lag_points(server: Server, span: str, now) -> list[LagPoint]:
    """The server's lag over `span` (RANGES): every report over a day, the hourly roll-up over a week; then now."""
    start = now - RANGES[span]
    if span == "24h":
        rows = (
            StatusReport.objects.filter(server=server, reachable=True, received_at__gte=start)
            .order_by("received_at")
            .values_list("received_at", "pending_updates", "lag_seconds")[:5000]
        )
        points = [LagPoint(at, pending, seconds) for at, pending, seconds in rows]
    else:
        first = int(start.timestamp()) // 3600
        rows = LagHour.objects.filter(server=server, hour__gte=first).order_by("hour")
        points = [
            LagPoint(min(now, datetime.fromtimestamp((hour + 1) * 3600, tz=UTC)), p, s)
            for hour, p, s in rows.values_list("hour", "pending_updates", "lag_seconds")
        ]
    if server.last_report_at is not None:
        current = lag_for(server)
        points.append(LagPoint(now, current.pending_updates, current.lag_seconds or 0.0))
    return points


@viewer_required
def server_page(request: HttpRequest, name: str) -> HttpResponse:
    """One server: state, lag chart, agent and store, status history, update runs, and its actions."""
    server = get_object_or_404(Server.objects.select_related("dataset"), name=name)
    span = request.GET.get("range", "24h")
    if span not in RANGES:
        span = "24h"
    now = timezone.now()
    chart = lag_chart(
        lag_points(server, span, now), now - RANGES[span], now, f"lag of {server.name} over {span}"
    )
    return page(
        request,
        "servers/server.html",
        {
            **_server_context(server),
            **_history_context(server),
            "chart": chart,
            "span": span,
            "spans": list(RANGES),
        },
    )


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
