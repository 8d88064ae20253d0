"""What the dashboard's fleet page shows, gathered in a fixed number of queries.

The fleet page lists every server of every dataset; its query count must not grow
with the fleet: one query for the datasets and their heads, one for the servers
with their pending counts (`with_lag`), one for all the sparklines.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import F, Max, OuterRef, QuerySet, Subquery
from django.db.models.functions import Trunc
from django.utils import timezone

from dmsupdate.state.keys import EffectiveTime
from publications.models import Dataset, ObjectKind, ObjectState, StateObject
from servers.models import Server, ServerState, StatusReport
from servers.services import Lag, lag_of, with_lag

# Sparkline resolution: one point per hour over the last day, so a server costs at
# most this many rows in the sparkline query however often it reports.
SPARK_HOURS = 24


@dataclass
class FleetRow:
    """One server line of the fleet page."""

    server: Server
    lag: Lag
    spark: list[float | None]

    @property
    def state(self) -> str:
        return self.lag.state


@dataclass
class DatasetFleet:
    """A dataset's head and its servers, as one section of the fleet page."""

    dataset: Dataset
    head_key: str | None
    head_ns: int | None
    rows: list[FleetRow] = field(default_factory=list)

    @property
    def head_at(self) -> datetime | None:
        return EffectiveTime(self.head_ns).to_datetime() if self.head_ns is not None else None

    @property
    def counts(self) -> list[tuple[str, int]]:
        """Servers per state, in the order of ServerState (for the section's summary line)."""
        n = Counter(row.state for row in self.rows)
        return [(state.value, n[state]) for state in ServerState if n[state]]


def datasets_with_heads() -> QuerySet[Dataset]:
    """Datasets annotated with their newest published update (key and time).

    A correlated subquery per dataset walks object_lag_idx backwards and stops at
    the first row, where GROUP BY + MAX over the registry would read every update.
    """
    newest = StateObject.objects.filter(
        dataset_id=OuterRef("pk"), kind=ObjectKind.UPDATE, state=ObjectState.PUBLISHED
    ).order_by("-effective_ns", "-key")
    return Dataset.objects.annotate(
        head_key=Subquery(newest.values("key")[:1]),
        head_ns=Subquery(newest.values("effective_ns")[:1]),
    ).order_by("name")


def lag_history(server_ids: Iterable[int], now: datetime, hours: int = SPARK_HOURS) -> dict[int, list]:
    """Each server's lag over the last `hours`, one value per hour (the worst of that hour), in one query.

    Hours without a report carry the previous value forward (the lag did not
    change without a report); hours before the first report are None.
    """
    ids = list(server_ids)
    if not ids:
        return {}
    start = (now - timedelta(hours=hours - 1)).replace(minute=0, second=0, microsecond=0)
    rows = (
        StatusReport.objects.filter(server_id__in=ids, received_at__gte=start)
        .annotate(hour=Trunc("received_at", "hour"))
        .values("server_id", "hour")
        .annotate(worst=Max("lag_seconds"))
        .order_by()
        .values_list("server_id", "hour", "worst")
    )
    buckets: dict[int, list[float | None]] = defaultdict(lambda: [None] * hours)
    for server_id, hour, worst in rows:
        index = int((hour - start).total_seconds() // 3600)
        if 0 <= index < hours:
            buckets[server_id][index] = worst
    history = {}
    for server_id, values in buckets.items():
        last = None
        for i, value in enumerate(values):
            if value is None:
                values[i] = last
            else:
                last = value
        history[server_id] = values
    return history


def fleet(state: str = "", dataset: str = "", now: datetime | None = None) -> list[DatasetFleet]:
    """The fleet page: each dataset's head and its servers with lag, state and 24 h history.

    `state` and `dataset` narrow what is shown (the filters of the page).
    """
    now = now or timezone.now()
    datasets = datasets_with_heads()
    if dataset:
        datasets = datasets.filter(name=dataset)
    sections = {d.pk: DatasetFleet(d, d.head_key, d.head_ns) for d in datasets}
    servers = Server.objects.filter(dataset_id__in=list(sections)).order_by(F("dataset__name"), F("name"))
    servers = list(with_lag(servers))
    history = lag_history((s.pk for s in servers), now)
    for server in servers:
        section = sections[server.dataset_id]
        lag = lag_of(server, server.pending_updates, section.head_ns, now)
        if state and lag.state != state:
            continue
        section.rows.append(FleetRow(server, lag, history.get(server.pk, [])))
    return list(sections.values())
