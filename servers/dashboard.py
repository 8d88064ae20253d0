"""What the dashboard's fleet page shows, gathered in a fixed number of queries.

The fleet page lists the servers of every dataset; its query count must not grow
with the fleet: one query for the datasets and their heads, one for the servers,
one for each dataset's newest update times, one for the shown rows' sparklines
(an hourly roll-up), one for the datasets' jobs. Every server's lag and state is
computed (for the counts, the state filter and the sort); only a page of rows per
dataset is rendered.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.utils import timezone

from dmsupdate.state.keys import EffectiveTime
from publications.models import Dataset, ObjectKind, ObjectState, StateObject
from servers.lag import LAG_FIELDS, Heads, Lag, datasets_with_heads, lag_of, replay_start
from servers.models import Agreement, LagHour, Server, ServerState

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
    spark: str  # the rendered sparkline (see _draw_sparklines)

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
    rows: list[FleetRow] = field(default_factory=list)  # the rows shown (one page)
    states: Counter = field(default_factory=Counter)  # every server of the dataset, by state
    matched: int = 0  # rows the filters kept, before paging
    first: int = 0  # index of the first row shown among them
    jobs: list = field(default_factory=list)  # its dataset-wide jobs, running or just ended
    head_publication: int | None = None  # the publication of the head, when it was published here
    agreement: Agreement | None = None  # "k of N servers agree at <time>" (servers.fingerprints)

    @property
    def head_at(self) -> datetime | None:
        return EffectiveTime(self.head_ns).to_datetime() if self.head_ns is not None else None

    @property
    def counts(self) -> list[tuple[str, int]]:
        """Servers per state, in the order of ServerState (for the section's summary line)."""
        return [(state.value, self.states[state]) for state in ServerState if self.states[state]]

    @property
    def last(self) -> int:
        """Position (from 1) of the last row shown among those the filters kept."""
        return self.first + len(self.rows)

    @property
    def more(self) -> int:
        """Rows the filters kept beyond this page."""
        return max(0, self.matched - self.first - len(self.rows))


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
    """Each server's lag over each of the last `hours`, oldest first, in one query: (worst, at its last report).

    Read from the hourly roll-up (servers.models.LagHour), so a server costs at most
    `hours` rows however often it reports. Hours without a report carry the previous
    hour's last value forward; hours before the first report are None.
    """
    ids = list(server_ids)
    if not ids:
        return {}
    last_hour = int(now.timestamp()) // 3600
    first = last_hour - hours + 1
    buckets: dict[int, list[tuple[float, float] | None]] = defaultdict(lambda: [None] * hours)
    for server_id, offsets, worst, last in _lag_hours(ids, first, last_hour):
        values = buckets[server_id]
        for i, w, v in zip(offsets, worst, last, strict=True):
            values[i] = (w, v)
    history = {}
    for server_id, values in buckets.items():
        previous = None
        for i, value in enumerate(values):
            if value is None:
                values[i] = None if previous is None else (previous, previous)
            else:
                previous = value[1]
        history[server_id] = values
    return history


def _lag_hours(
    ids: list[int], first: int, last: int
) -> list[tuple[int, list[int], list[float], list[float]]]:
    """Per server: the offsets from `first` of its hours in [first, last], each hour's worst and last lag.

    On PostgreSQL one row per server with three arrays (the driver decodes arrays far
    faster than thousands of rows); elsewhere rows folded here.
    """
    table = LagHour._meta.db_table
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute(
                f"""SELECT server_id, array_agg(hour - %s), array_agg(max_lag_seconds), array_agg(lag_seconds)
                    FROM {table} WHERE hour BETWEEN %s AND %s AND server_id = ANY(%s) GROUP BY server_id""",
                [first, first, last, ids],
            )
            return cur.fetchall()
    folded: dict[int, tuple[list[int], list[float], list[float]]] = defaultdict(lambda: ([], [], []))
    rows = LagHour.objects.filter(hour__gte=first, hour__lte=last, server_id__in=ids)
    for server_id, hour, worst, lag in rows.values_list(
        "server_id", "hour", "max_lag_seconds", "lag_seconds"
    ):
        offsets, worsts, lags = folded[server_id]
        offsets.append(hour - first)
        worsts.append(worst)
        lags.append(lag)
    return [(server_id, *values) for server_id, values in folded.items()]


# What the fleet page reads of each server: its state inputs (servers.lag.state_of)
# and what the row shows; not the reported key lists' full content beyond late_keys.
FLEET_FIELDS = ("name", *LAG_FIELDS, "failed_key", "last_error", "unreachable_error", "ready", "ready_reason")

# Rows shown per dataset section; more are reached by search, a state filter or the next page.
SECTION_ROWS = 100
# Sort orders of the fleet table; "state" puts what needs the admin first.
SORTS = ("name", "state", "lag")
STATE_ORDER = {
    state: rank
    for rank, state in enumerate(
        [
            ServerState.FAILING,
            ServerState.UNREACHABLE,
            ServerState.BEHIND,
            ServerState.REBUILDING,
            ServerState.OK,
            ServerState.DISABLED,
        ]
    )
}
# Jobs of a dataset shown in its section: those running, and those that ended this recently.
JOB_LINGER_SECONDS = 120


def _sort_key(sort: str):
    if sort == "state":
        return lambda row: (STATE_ORDER.get(row.lag.state, 99), row.server.name)
    if sort == "lag":
        # Never reported first (its lag is unknown), then the furthest behind.
        return lambda row: (row.lag.lag_seconds is not None, -(row.lag.lag_seconds or 0), row.server.name)
    return None


def fleet(
    state: str = "",
    dataset: str = "",
    now: datetime | None = None,
    search: str = "",
    sort: str = "name",
    page: int = 1,
) -> list[DatasetFleet]:
    """The fleet page: each dataset's head and its servers with lag, state and 24 h history.

    `state`, `dataset` and `search` (part of a server's name) narrow what is shown;
    `sort` orders each section (SORTS); each section shows SECTION_ROWS rows from `page`.
    """
    now = now or timezone.now()
    # The agreement line comes with the datasets (a reverse one-to-one: no query of its own).
    datasets = datasets_with_heads().select_related("agreement")
    if dataset:
        datasets = datasets.filter(name=dataset)
    sections = {
        d.pk: DatasetFleet(d, d.head_key, d.head_ns, d.image_ns, agreement=getattr(d, "agreement", None))
        for d in datasets
    }
    # Named rows rather than model instances: a thousand Server objects cost more to
    # build than the query; lag_of and state_of read only these attributes.
    servers = Server.objects.filter(dataset_id__in=list(sections)).order_by("name")
    if search:
        servers = servers.filter(name__icontains=search)
    newest = newest_update_times(list(sections), PENDING_CAP + 1)
    gone = missing_update_times(list(sections))
    for server in servers.values_list("pk", *FLEET_FIELDS, named=True):
        section = sections[server.dataset_id]
        start = replay_start(server.effective_ns, Heads(section.head_ns, section.image_ns))
        pending = pending_of(start, newest.get(server.dataset_id, []))
        missing = missing_of(server.effective_ns, gone.get(server.dataset_id, []))
        lag = lag_of(server, pending, section.head_ns, now, missing=missing)
        section.states[lag.state] += 1
        if not state or lag.state == state:
            section.rows.append(FleetRow(server, lag, ""))
    key = _sort_key(sort)
    for section in sections.values():
        if key is not None:
            section.rows.sort(key=key)
        section.matched = len(section.rows)
        section.first = (max(1, page) - 1) * SECTION_ROWS if dataset else 0
        section.rows = section.rows[section.first : section.first + SECTION_ROWS]
    _draw_sparklines(sections.values(), now)
    _attach_jobs(sections, now)
    _link_heads(sections)
    return list(sections.values())


def _link_heads(sections: dict[int, DatasetFleet]) -> None:
    """The publication behind each dataset's head, for its link (one query on publication_time_idx)."""
    from django.db.models import Q

    from publications.models import PublicationEvent

    heads = [Q(dataset_id=pk, effective_ns=s.head_ns) for pk, s in sections.items() if s.head_ns is not None]
    if not heads:
        return
    query = heads[0]
    for more in heads[1:]:
        query |= more
    for dataset_id, key, pk in PublicationEvent.objects.filter(query).values_list("dataset_id", "key", "pk"):
        if sections[dataset_id].head_key == key:
            sections[dataset_id].head_publication = pk


def _draw_sparklines(sections: Iterable[DatasetFleet], now: datetime) -> None:
    """Each shown row's 24 h sparkline, on one scale per section (1 day behind reads half of 2 days)."""
    from servers.templatetags.fleet import sparkline_svg

    sections = list(sections)
    history = lag_history([row.server.pk for s in sections for row in s.rows], now)
    for section in sections:
        points = {row.server.pk: history.get(row.server.pk, []) for row in section.rows}
        top = max(
            [hour[0] for values in points.values() for hour in values if hour is not None]
            + [row.lag.lag_seconds or 0 for row in section.rows]
            + [0.0]
        )
        for row in section.rows:
            row.spark = sparkline_svg(points[row.server.pk], row.lag.lag_seconds, top)


def _attach_jobs(sections: dict[int, DatasetFleet], now: datetime) -> None:
    """The dataset-wide jobs (update all, GC, ...) running, or ended in the last JOB_LINGER_SECONDS."""
    from django.db.models import Q

    from jobs.models import Job, JobStatus

    recent = now - timedelta(seconds=JOB_LINGER_SECONDS)
    jobs = (
        Job.objects.filter(dataset_id__in=list(sections), server__isnull=True)
        .filter(Q(status__in=[JobStatus.QUEUED, JobStatus.RUNNING]) | Q(finished_at__gte=recent))
        .select_related("dataset")
        .order_by("-created_at")[:20]
    )
    for job in jobs:
        sections[job.dataset_id].jobs.append(job)
