"""What the dashboard's fleet page shows, gathered in a fixed number of queries.

The fleet page lists every server of every dataset; its query count must not grow
with the fleet: one query for the datasets and their heads, one for the servers
with their pending counts, one for all the sparklines.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.core.cache import cache
from django.db.models import IntegerField, Max, OuterRef, QuerySet, Subquery
from django.db.models.expressions import RawSQL
from django.db.models.functions import Trunc
from django.utils import timezone

from dmsupdate.state.keys import EffectiveTime
from publications.models import Dataset, ObjectKind, ObjectState, StateObject
from servers.models import Server, ServerState, StatusReport
from servers.services import Lag, lag_of

# Pending updates are counted up to this many per server on the fleet page and shown
# as "1,000+" beyond: counting is O(pending) per server, so an uncapped count for a
# server that never reported (every update pending) would read the whole registry.
PENDING_CAP = 1000

# Sparkline resolution: one point per hour over the last day, so a server costs at
# most this many rows in the sparkline query however often it reports.
SPARK_HOURS = 24


@dataclass
class FleetRow:
    """One server line of the fleet page."""

    server: Server
    lag: Lag
    spark: str  # the rendered sparkline (see fleet_sparklines)

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


def with_capped_pending(servers: QuerySet[Server]) -> QuerySet[Server]:
    """Servers annotated with `pending_updates` (as `with_lag`), counted up to PENDING_CAP + 1.

    The count reads only object_lag_idx (an index-only scan: no column outside the
    index is touched) and stops after PENDING_CAP + 1 entries.
    """
    objects = StateObject._meta.db_table
    table = Server._meta.db_table
    pending = RawSQL(
        f"""SELECT count(*) FROM (
                SELECT 1 FROM {objects} o
                WHERE o.dataset_id = {table}.dataset_id AND o.kind = %s AND o.state = %s
                  AND o.effective_ns > COALESCE({table}.effective_ns, -1)
                LIMIT %s) AS capped""",
        [ObjectKind.UPDATE, ObjectState.PUBLISHED, PENDING_CAP + 1],
        output_field=IntegerField(),
    )
    # Needed updates gone from the bucket (servers.services.missing_needed): rare rows, same index.
    missing = RawSQL(
        f"""SELECT count(*) FROM {objects} o
                WHERE o.dataset_id = {table}.dataset_id AND o.kind = %s AND o.state = %s
                  AND o.effective_ns > {table}.effective_ns""",
        [ObjectKind.UPDATE, ObjectState.MISSING],
        output_field=IntegerField(),
    )
    return servers.annotate(pending_updates=pending, missing_updates=missing)


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


# What the fleet page reads of each server: its state inputs (servers.services.state_of)
# and what the row shows; not the reported key lists' full content beyond late_keys.
FLEET_FIELDS = (
    "name",
    "dataset_id",
    "enabled",
    "agent_url",
    "effective_ns",
    "last_report_at",
    "last_succeeded",
    "failed_key",
    "last_error",
    "late_keys",
    "unreachable_since",
    "unreachable_error",
    "rebuild_requested_at",
)

# Sparklines change at most hourly in shape; the fleet page polls every few seconds,
# so the rendered lines are kept this long instead of re-reading a day of reports.
SPARK_CACHE_SECONDS = 60


def fleet_sparklines(dataset_ids: list[int], server_ids: list[int], now: datetime) -> dict[int, str]:
    """Rendered 24 h lag sparklines (inline SVG) of the given datasets' servers, cached briefly."""
    from servers.templatetags.dashboard import sparkline_svg

    key = "dashboard:sparklines:" + ",".join(map(str, sorted(dataset_ids)))
    lines = cache.get(key)
    if lines is None:
        lines = {pk: str(sparkline_svg(points)) for pk, points in lag_history(server_ids, now).items()}
        cache.set(key, lines, SPARK_CACHE_SECONDS)
    return lines


def fleet(state: str = "", dataset: str = "", now: datetime | None = None) -> list[DatasetFleet]:
    """The fleet page: each dataset's head and its servers with lag, state and 24 h history.

    `state` and `dataset` narrow what is shown (the filters of the page).
    """
    now = now or timezone.now()
    datasets = datasets_with_heads()
    if dataset:
        datasets = datasets.filter(name=dataset)
    sections = {d.pk: DatasetFleet(d, d.head_key, d.head_ns) for d in datasets}
    servers = list(
        with_capped_pending(
            Server.objects.filter(dataset_id__in=list(sections)).only(*FLEET_FIELDS).order_by("name")
        )
    )
    lines = fleet_sparklines(list(sections), [s.pk for s in servers], now)
    for server in servers:
        section = sections[server.dataset_id]
        lag = lag_of(server, server.pending_updates, section.head_ns, now)
        if state and lag.state != state:
            continue
        section.rows.append(FleetRow(server, lag, lines.get(server.pk, "")))
    return list(sections.values())
