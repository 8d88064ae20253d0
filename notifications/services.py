"""Events for webhooks: publications applied everywhere, servers entering a state with an event, failed jobs.

`emit` records an event once (by kind and subject) with one pending delivery per
webhook that wants it, and hands it to the worker after the commit: whoever emits
never waits for a receiver. Server states are compared with the last state each
server was seen in (`observe`): any change into a state listed in STATE_EVENTS
is an event, whatever made it (a report, a failed contact, a report gone stale,
a fingerprint that differs), so a new state with an event needs only its line there.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, Max, Min, Q
from django.utils import timezone

from dmsupdate.state.keys import iso
from jobs.models import Job
from notifications.delivery import enqueue
from notifications.models import AppliedMark, Delivery, Event, EventKind, ObservedState, Webhook
from publications.models import Dataset, PublicationEvent
from servers.lag import lags_of
from servers.models import Server

log = logging.getLogger(__name__)
STATE_EVENTS = {
    "failing": EventKind.SERVER_FAILING,
    "unreachable": EventKind.SERVER_UNREACHABLE,
    "diverged": EventKind.SERVER_DIVERGED,
}
# Publications told applied per report at most (the rest follow with the next reports).
APPLIED_BATCH = 500


def hooks_for(dataset_id: int | None, kind: str) -> list[Webhook]:
    rows = Webhook.objects.filter(enabled=True).filter(Q(dataset_id=dataset_id) | Q(dataset__isnull=True))
    return [hook for hook in rows if hook.wants(kind)]


def emit(kind: str, dataset: Dataset | None, subject: str, data: dict[str, Any]) -> Event | None:
    """Record an event (once per kind and subject) with its deliveries; queued for the worker after commit."""
    hooks = hooks_for(dataset.pk if dataset else None, kind)
    if not hooks:
        return None
    try:
        with transaction.atomic():
            event, created = Event.objects.get_or_create(
                kind=kind, subject=subject[:200], defaults={"dataset": dataset, "data": data}
            )
            if not created:
                return event
            now = timezone.now()
            Delivery.objects.bulk_create(
                [Delivery(event=event, webhook=hook, next_attempt_at=now) for hook in hooks],
                ignore_conflicts=True,
            )
    except IntegrityError:  # the same event, emitted at the same moment elsewhere
        return Event.objects.filter(kind=kind, subject=subject[:200]).first()
    transaction.on_commit(lambda: enqueue(event.pk))
    return event


def observe(server_ids: list[int] | None = None, now: datetime | None = None) -> list[Event]:
    """Compare servers' states with the last seen ones; emit an event for each change into a state with one."""
    now = now or timezone.now()
    servers = list(
        Server.objects.select_related("dataset").filter(**({"pk__in": server_ids} if server_ids else {}))
    )
    if not servers:
        return []
    lags = lags_of(servers, now)
    known = dict(
        ObservedState.objects.filter(server_id__in=[s.pk for s in servers]).values_list("server_id", "state")
    )
    events = []
    for server in servers:
        state = lags[server.pk].state
        previous = known.get(server.pk)
        if previous == state:
            continue
        if previous is None:
            try:
                ObservedState.objects.create(server_id=server.pk, state=state, since=now)
            except IntegrityError:
                continue
        elif not ObservedState.objects.filter(server_id=server.pk, state=previous).update(
            state=state, since=now
        ):
            continue  # another observer recorded this change first
        kind = STATE_EVENTS.get(state)
        if kind is None:
            continue
        lag = lags[server.pk]
        event = emit(
            kind,
            server.dataset,
            f"server:{server.pk}:{state}:{now.isoformat()}",
            {
                "server": server.name,
                "state": state,
                "previous": previous,
                "effective_time": iso(server.effective_ns),
                "pending_updates": lag.pending_updates,
                "lag_seconds": lag.lag_seconds,
                "failed_key": server.failed_key or None,
                "error": server.last_error or server.unreachable_error or None,
            },
        )
        if event is not None:
            events.append(event)
    return events


def check_applied(dataset_id: int) -> list[Event]:
    """Emit `publication.applied` for the dataset's publications every enabled server has applied since the last check."""
    enabled = Server.objects.filter(dataset_id=dataset_id, enabled=True).aggregate(
        low=Min("effective_ns"), servers=Count("pk"), reported=Count("effective_ns")
    )
    if not enabled["servers"] or enabled["reported"] < enabled["servers"]:
        return []
    low = enabled["low"]
    hooks = hooks_for(dataset_id, EventKind.PUBLICATION_APPLIED)
    events = []
    with transaction.atomic():
        mark, _ = AppliedMark.objects.select_for_update().get_or_create(
            dataset_id=dataset_id, defaults={"effective_ns": _first_mark(dataset_id, hooks, low)}
        )
        if low <= mark.effective_ns:
            return []
        if not hooks:
            AppliedMark.objects.filter(pk=mark.pk).update(effective_ns=low)
            return []
        rows = list(
            PublicationEvent.objects.filter(
                dataset_id=dataset_id, effective_ns__gt=mark.effective_ns, effective_ns__lte=low
            )
            .exclude(op__in=("image", "dump"))
            .select_related("dataset")
            .order_by("effective_ns")[:APPLIED_BATCH]
        )
        for publication in rows:
            event = emit(
                EventKind.PUBLICATION_APPLIED,
                publication.dataset,
                f"publication:{publication.pk}",
                {
                    "publication": publication.pk,
                    "key": publication.key,
                    "label": publication.source,
                    "op": publication.op,
                    "effective_time": iso(publication.effective_ns),
                    "tags": publication.tags,
                    "servers": enabled["servers"],
                },
            )
            if event is not None:
                events.append(event)
        reached = rows[-1].effective_ns if len(rows) == APPLIED_BATCH else low
        AppliedMark.objects.filter(pk=mark.pk).update(effective_ns=reached)
    return events


def _first_mark(dataset_id: int, hooks: list[Webhook], low: int) -> int:
    """Where telling starts: after the publications older than the first webhook that wants to be told."""
    if not hooks:
        return low
    since = min(hook.created_at for hook in hooks)
    older = PublicationEvent.objects.filter(dataset_id=dataset_id, created_at__lt=since)
    return older.aggregate(newest=Max("effective_ns"))["newest"] or 0


def job_failed(job: Job) -> Event | None:
    dataset = job.dataset or (job.server.dataset if job.server else None)
    return emit(
        EventKind.JOB_FAILED,
        dataset,
        f"job:{job.pk}",
        {
            "job": job.pk,
            "kind": job.kind,
            "server": job.server.name if job.server else None,
            "error": job.error,
            "actor": job.actor,
        },
    )
