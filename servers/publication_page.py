"""The page of one publication: the object, who published it and when, and where it has been applied.

It lives with the servers (which import publications) because it reads each server's
reports: when a server reached the publication, or failed on it, or skipped it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Min
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404

from accounts.access import page, viewer_required
from publications.models import PublicationEvent
from publications.replicas import applied_on
from servers.lag import lags_of
from servers.models import Server, StatusReport


@dataclass(frozen=True)
class Rollout:
    """Where one server is with one publication: applied, skipped, failed, pending, or disabled."""

    server: Server
    state: str  # the server's own state badge (ok, behind, ...)
    outcome: str  # applied | skipped | failed | pending | disabled
    at: datetime | None  # when it was applied, failed or published (pending since)
    detail: str = ""

    @property
    def tone(self) -> str:
        return {"applied": "good", "skipped": "good", "failed": "bad", "pending": "warn"}.get(
            self.outcome, "mute"
        )


def rollout(event: PublicationEvent) -> list[Rollout]:
    """Each server of the publication's dataset and where it is with it (a fixed number of queries)."""
    servers = list(Server.objects.filter(dataset_id=event.dataset_id).order_by("name"))
    states = lags_of(servers)
    reached = dict(
        StatusReport.objects.filter(
            server__in=servers,
            reachable=True,
            effective_ns__gte=event.effective_ns,
            received_at__gte=event.created_at,
        )
        .values("server_id")
        .annotate(first=Min("received_at"))
        .values_list("server_id", "first")
    )
    skipped = _skipped_reasons(servers, event)
    rows = []
    for server in servers:
        state = states[server.pk].state
        if not server.enabled:
            rows.append(Rollout(server, state, "disabled", None, "not counted while disabled"))
        elif server.effective_ns is not None and server.effective_ns >= event.effective_ns:
            if server.pk in skipped:
                rows.append(Rollout(server, state, "skipped", reached.get(server.pk), skipped[server.pk]))
            else:
                rows.append(
                    Rollout(server, state, "applied", reached.get(server.pk) or server.last_report_at)
                )
        elif server.failed_key == event.key:
            rows.append(Rollout(server, state, "failed", server.last_report_at, server.last_error))
        else:
            rows.append(Rollout(server, state, "pending", event.created_at, ""))
    return rows


def _skipped_reasons(servers: list[Server], event: PublicationEvent) -> dict[int, str]:
    """Why a server's run skipped this key (superseded, ...), from its reports' `skipped` since it was published."""
    reasons: dict[int, str] = {}
    rows = StatusReport.objects.filter(server__in=servers, reachable=True, received_at__gte=event.created_at)
    for server_id, entries in rows.values_list("server_id", "body__skipped"):
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and entry.get("key") == event.key:
                reasons[server_id] = str(entry.get("reason") or "skipped")
    return reasons


@viewer_required
def publication_page(request: HttpRequest, pk: int) -> HttpResponse:
    """One publication: key, size, sha256, tags, who and when; per server applied / pending / failed, with times."""
    event = get_object_or_404(PublicationEvent.objects.select_related("dataset", "user", "object"), pk=pk)
    count = applied_on([event])[event.pk]
    return page(
        request,
        "publications/publication.html",
        {"publication": event, "rows": rollout(event), "applied": count.applied, "total": count.total},
    )
