"""What the dashboard's fleet page shows, gathered in a fixed number of queries.

The fleet page lists every server of every dataset; its query count must not grow
with the fleet: one query for the datasets and their heads, one for the servers
with their pending counts, one for all the sparklines.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.db import connection
from django.db.models import Max
from django.db.models.functions import Extract, Floor, Trunc
from django.utils import timezone

from dmsupdate.state.keys import EffectiveTime
from publications.models import Dataset, ObjectKind, ObjectState, StateObject
from servers.lag import LAG_FIELDS, Heads, Lag, datasets_with_heads, lag_of, replay_start
from servers.models import Server, ServerState, StatusReport

# Pending updates are counted up to this many per server on the fleet page and shown
# as "1,000+" beyond: the page reads each dataset's newest update times once and
# counts every server in them, whatever the fleet's spread.
PENDING_CAP = 1000

# Sparkline resolution: one point per hour over the last day, so a server costs at
# most this many rows in the sparkline query however often it reports.
SPARK_HOURS = 24


@dataclass
class FleetRow:
    """One server line of the fleet page."""

    server: Any  # a named row of FLEET_FIELDS (+ pk), read like a Server
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
    image_ns: int | None = None
    rows: list[FleetRow] = field(default_factory=list)

    @property
    def head_at(self) -> datetime | None:
        return EffectiveTime(self.head_ns).to_datetime() if self.head_ns is not None else None

    @property
    def counts(self) -> list[tuple[str, int]]:
        """Servers per state, in the order of ServerState (for the section's summary line)."""
        n = Counter(row.state for row in self.rows)
        return [(state.value, n[state]) for state in ServerState if n[state]]


def newest_update_times(dataset_ids: list[int], limit: int) -> dict[int, list[int]]:
    """The `limit` newest published update times of each dataset, oldest first, in one query.

    A server's pending count up to the cap is then a binary search in its dataset's
    list: no count per server (each an index walk over its pending updates).
    """
    if not dataset_ids:
        return {}
    times: dict[int, list[int]] = defaultdict(list)
    if connection.vendor == "postgresql":
        # LATERAL: one backward walk of object_lag_idx per dataset, stopping at `limit`.
        with connection.cursor() as cur:
            cur.execute(
                f"""SELECT d.id, o.effective_ns FROM {Dataset._meta.db_table} d CROSS JOIN LATERAL (
                        SELECT effective_ns FROM {StateObject._meta.db_table}
                        WHERE dataset_id = d.id AND kind = %s AND state = %s AND effective_ns IS NOT NULL
                        ORDER BY effective_ns DESC LIMIT %s) AS o
                    WHERE d.id = ANY(%s)""",
                [ObjectKind.UPDATE, ObjectState.PUBLISHED, limit, list(dataset_ids)],
            )
            for dataset_id, effective_ns in cur.fetchall():
                times[dataset_id].append(effective_ns)
    else:
        newest = StateObject.objects.filter(
            kind=ObjectKind.UPDATE, state=ObjectState.PUBLISHED, effective_ns__isnull=False
        ).order_by("-effective_ns")
        for dataset_id in dataset_ids:
            times[dataset_id] = list(
                newest.filter(dataset_id=dataset_id).values_list("effective_ns", flat=True)[:limit]
            )
    for values in times.values():
        values.reverse()
    return times


def missing_update_times(dataset_ids: list[int]) -> dict[int, list[int]]:
    """Effective times of each dataset's updates gone from the bucket (state `missing`), sorted; one query.

    Such rows are rare; a server needs those later than its effective time
    (servers.lag.missing_needed).
    """
    times: dict[int, list[int]] = defaultdict(list)
    rows = StateObject.objects.filter(
        dataset_id__in=dataset_ids,
        kind=ObjectKind.UPDATE,
        state=ObjectState.MISSING,
        effective_ns__isnull=False,
    ).order_by("effective_ns")
    for dataset_id, effective_ns in rows.values_list("dataset_id", "effective_ns"):
        times[dataset_id].append(effective_ns)
    return times


def missing_of(effective_ns: int | None, missing: list[int]) -> int:
    """Missing updates later than `effective_ns` (none for a server that never reported)."""
    if effective_ns is None:
        return 0
    return len(missing) - bisect_right(missing, effective_ns)


def pending_of(start: int | None, newest: list[int]) -> int:
    """Published updates later than `start` (servers.lag.replay_start), counted in a dataset's
    newest times (capped by its length)."""
    if start is None:
        return len(newest)
    return len(newest) - bisect_right(newest, start)


def lag_history(server_ids: Iterable[int], now: datetime, hours: int = SPARK_HOURS) -> dict[int, list]:
    """Each server's lag over the last `hours`, one value per hour (the worst of that hour), in one query.

    Hours without a report carry the previous value forward (the lag did not
    change without a report); hours before the first report are None.
    """
    ids = list(server_ids)
    if not ids:
        return {}
    start = (now - timedelta(hours=hours - 1)).replace(minute=0, second=0, microsecond=0)
    reports = StatusReport.objects.filter(server_id__in=ids, received_at__gte=start)
    buckets: dict[int, list[float | None]] = defaultdict(lambda: [None] * hours)
    if connection.vendor == "postgresql":
        # Hours since the epoch as plain numbers: turning tens of thousands of truncated
        # timestamps back into aware datetimes cost more than the query itself.
        # Through a bare cursor: tens of thousands of rows through the ORM's converters cost
        # more than the query.
        first = int(start.timestamp()) // 3600
        query, params = (
            reports.annotate(hour=Floor(Extract("received_at", "epoch") / 3600))
            .values("server_id", "hour")
            .annotate(worst=Max("lag_seconds"))
            .order_by()
            .values_list("server_id", "hour", "worst")
            .query.sql_with_params()
        )
        with connection.cursor() as cur:
            cur.execute(query, params)
            for server_id, hour, worst in cur.fetchall():
                index = int(hour) - first
                if 0 <= index < hours:
                    buckets[server_id][index] = worst
    else:
        truncated = (
            reports.annotate(hour=Trunc("received_at", "hour"))
            .values("server_id", "hour")
            .annotate(worst=Max("lag_seconds"))
            .order_by()
            .values_list("server_id", "hour", "worst")
        )
        for server_id, when, worst in truncated:
            index = int((when - start).total_seconds() // 3600)
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


# What the fleet page reads of each server: its state inputs (servers.lag.state_of)
# and what the row shows; not the reported key lists' full content beyond late_keys.
FLEET_FIELDS = ("name", *LAG_FIELDS, "failed_key", "last_error", "unreachable_error")

# Sparklines change at most hourly in shape; the fleet page polls every few seconds,
# so the rendered lines are kept this long instead of re-reading a day of reports.
SPARK_CACHE_SECONDS = 60


def fleet_sparklines(dataset_ids: list[int], server_ids: list[int], now: datetime) -> dict[int, str]:
    """Rendered 24 h lag sparklines (inline SVG) of the given datasets' servers, cached briefly."""
    from servers.templatetags.fleet import sparkline_svg

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
    sections = {d.pk: DatasetFleet(d, d.head_key, d.head_ns, d.image_ns) for d in datasets}
    # Named rows rather than model instances: a thousand Server objects cost more to
    # build than the query; lag_of and state_of read only these attributes.
    servers = list(
        Server.objects.filter(dataset_id__in=list(sections))
        .order_by("name")
        .values_list("pk", *FLEET_FIELDS, named=True)
    )
    newest = newest_update_times(list(sections), PENDING_CAP + 1)
    gone = missing_update_times(list(sections))
    lines = fleet_sparklines(list(sections), [s.pk for s in servers], now)
    for server in servers:
        section = sections[server.dataset_id]
        start = replay_start(server.effective_ns, Heads(section.head_ns, section.image_ns))
        pending = pending_of(start, newest.get(server.dataset_id, []))
        missing = missing_of(server.effective_ns, gone.get(server.dataset_id, []))
        lag = lag_of(server, pending, section.head_ns, now, missing=missing)
        if state and lag.state != state:
            continue
        section.rows.append(FleetRow(server, lag, lines.get(server.pk, "")))
    return list(sections.values())
