"""What the dashboard's fleet page shows, gathered in a fixed number of queries.

The fleet page lists the servers of every dataset; its query count must not grow
with the fleet: one query for the datasets and their heads, one for the servers,
one for each dataset's newest update times, one for the updates missing from the
bucket, one for the shown rows' sparklines (servers.sparklines), one for the
datasets' jobs, one for the heads' publications. Every server's lag and state is
computed (for the counts, the state filter and the sort); only a page of rows is
built and rendered.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections import Counter, defaultdict, namedtuple
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Q, TextField, Value
from django.db.models.functions import Cast, NullIf
from django.utils import timezone

from dmsupdate.state.keys import EffectiveTime
from publications.models import Dataset, ObjectKind, ObjectState, StateObject
from servers.lag import (
    LAG_FIELDS,
    Heads,
    Lag,
    datasets_with_heads,
    lag_of,
    lag_seconds,
    replay_start,
    report_stale,
    state_of,
)
from servers.models import Agreement, Server, ServerState
from servers.sparklines import lag_history

# Pending updates are counted up to this many per server on the fleet page and shown
# as "1,000+" beyond: the page reads each dataset's newest update times once and
# counts every server in them, whatever the fleet's spread.
PENDING_CAP = 1000


@dataclass(slots=True)
class FleetRow:
    """One server line of the fleet page."""

    server: Any  # a FleetServer, read like a Server
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

    @property
    def next_page(self) -> int:
        """The page of the dataset's own view (SECTION_ROWS a page) holding the first row not shown."""
        return self.last // SECTION_ROWS + 1


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


def missing_update_times(after: dict[int, int]) -> dict[int, list[int]]:
    """Effective times of each dataset's updates gone from the bucket (state `missing`), sorted; one query.

    A server needs those later than its effective time (servers.lag.missing_needed), so
    only those later than `after[dataset id]`, its least advanced server's, are read
    (object_lag_idx): a registry's history of gaps costs nothing once every server is past it.
    """
    times: dict[int, list[int]] = defaultdict(list)
    if not after:
        return times
    bounds = Q()
    for dataset_id, effective_ns in after.items():
        bounds |= Q(dataset_id=dataset_id, effective_ns__gt=effective_ns)
    rows = StateObject.objects.filter(bounds, kind=ObjectKind.UPDATE, state=ObjectState.MISSING).order_by(
        "effective_ns"
    )
    for dataset_id, effective_ns in rows.values_list("dataset_id", "effective_ns"):
        times[dataset_id].append(effective_ns)
    return times


def least_effective(rows: Iterable[tuple]) -> dict[int, int]:
    """The least effective time among each dataset's servers that reported one (rows of FLEET_COLUMNS)."""
    least: dict[int, int] = {}
    for values in rows:
        effective_ns = values[_EFFECTIVE]
        if effective_ns is not None and effective_ns < least.get(values[_DATASET], effective_ns + 1):
            least[values[_DATASET]] = effective_ns
    return least


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


# What the fleet page reads of each server: its state inputs (servers.lag.state_of)
# and what the row shows; not the reported key lists' full content beyond late_keys.
FLEET_FIELDS = ("name", *LAG_FIELDS, "failed_key", "last_error", "unreachable_error", "ready", "ready_reason")
# The same, as read: late_keys as JSON text only when there are some (almost never: no
# list to decode per server), and a row read like a Server by lag_of and the row tags.
FLEET_COLUMNS = tuple(
    NullIf(Cast(name, TextField()), Value("[]", TextField())) if name == "late_keys" else name
    for name in ("pk", *FLEET_FIELDS)
)
FleetServer = namedtuple("FleetServer", ("pk", *FLEET_FIELDS))
_DATASET, _EFFECTIVE = FleetServer._fields.index("dataset_id"), FleetServer._fields.index("effective_ns")

# Rows shown per dataset section; more are reached by search, a state filter or the next page.
SECTION_ROWS = 100
# Rows the overview (every dataset at once) shows in all, shared by its sections, each
# showing at least MIN_SECTION_ROWS: each row costs its sparkline and its share of a
# fragment polled every few seconds, so ten datasets of a thousand servers must not
# make a page of a thousand rows. A dataset's own page shows SECTION_ROWS a page.
PAGE_ROWS = 400
MIN_SECTION_ROWS = 20
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


def section_rows(sections: int, one_dataset: bool) -> int:
    """Rows each section shows: SECTION_ROWS on a dataset's own page, its share of PAGE_ROWS on the overview."""
    if one_dataset:
        return SECTION_ROWS
    return min(SECTION_ROWS, max(MIN_SECTION_ROWS, PAGE_ROWS // max(1, sections)))


def _sort_key(sort: str) -> Callable[[Any, str, int | None, int], Any]:
    """A server's place in its section from its row, state and dataset head: a tuple of plain
    values ending with its index among the servers read (they are read by name, so the index
    alone orders by name)."""
    if sort == "state":
        return lambda server, state, head_ns, i: (STATE_ORDER.get(state, 99), server.name, i)
    if sort == "lag":

        def by_lag(server: Any, state: str, head_ns: int | None, i: int) -> tuple:
            # Never reported first (its lag is unknown), then the furthest behind.
            seconds = lag_seconds(head_ns, server.effective_ns)
            return (seconds is not None, -(seconds or 0), server.name, i)

        return by_lag
    return lambda server, state, head_ns, i: i


def _fleet_server(values: tuple) -> FleetServer:
    """A server row as read (late keys as JSON text, or None when there are none), named."""
    server = FleetServer._make(values)
    return server if server.late_keys is None else server._replace(late_keys=json.loads(server.late_keys))


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
    `sort` orders each section (SORTS). One dataset's section shows SECTION_ROWS rows
    from `page`; the overview shows each section's share of PAGE_ROWS from the first.
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
    servers = Server.objects.filter(dataset_id__in=list(sections)).order_by("name")
    if search:
        servers = servers.filter(name__icontains=search)
    rows = list(servers.values_list(*FLEET_COLUMNS))
    newest = newest_update_times(list(sections), PENDING_CAP + 1)
    gone = missing_update_times(least_effective(rows))
    # What every server of a section is compared with, looked up once per section.
    inputs = {
        pk: (s, Heads(s.head_ns, s.image_ns), newest.get(pk, []), gone.get(pk, []))
        for pk, s in sections.items()
    }
    stale = report_stale()

    def counts(server: FleetServer) -> tuple[int, int]:
        """Its pending and missing updates."""
        _section, heads, newest_times, missing_times = inputs[server.dataset_id]
        pending = pending_of(replay_start(server.effective_ns, heads), newest_times)
        return pending, missing_of(server.effective_ns, missing_times)

    def lag(server: FleetServer) -> Lag:
        pending, missing = counts(server)
        return lag_of(server, pending, inputs[server.dataset_id][0].head_ns, now, missing, stale)

    # Every server is judged (its state, for the counts, the state filter and the sort) but
    # only the shown ones get their whole Lag and are kept as objects: the others leave
    # plain tuples, which the garbage collector stops tracking, rather than ten thousand
    # objects for it to walk.
    places: dict[int, list] = {pk: [] for pk in sections}
    key = _sort_key(sort)
    for i, values in enumerate(rows):
        server = _fleet_server(values)
        pending, missing = counts(server)
        judged = state_of(server, pending, now, missing, stale)
        section = sections[server.dataset_id]
        section.states[judged] += 1
        if not state or judged == state:
            places[server.dataset_id].append(key(server, judged, section.head_ns, i))
    shown = section_rows(len(sections), one_dataset=bool(dataset))
    for pk, section in sections.items():
        order = places[pk]
        if sort != "name":
            order.sort()
        section.matched = len(order)
        section.first = (max(1, page) - 1) * SECTION_ROWS if dataset else 0
        for place in order[section.first : section.first + shown]:
            server = _fleet_server(rows[place if isinstance(place, int) else place[-1]])
            section.rows.append(FleetRow(server, lag(server), ""))
    _draw_sparklines(sections.values(), now)
    _attach_jobs(sections, now)
    _link_heads(sections)
    return list(sections.values())


def _link_heads(sections: dict[int, DatasetFleet]) -> None:
    """The publication behind each dataset's head, for its link (one query on publication_time_idx)."""
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
            [worst for values in points.values() for _, worst, _ in values]
            + [row.lag.lag_seconds or 0 for row in section.rows]
            + [0.0]
        )
        for row in section.rows:
            row.spark = sparkline_svg(points[row.server.pk], row.lag.lag_seconds, top)


def _attach_jobs(sections: dict[int, DatasetFleet], now: datetime) -> None:
    """The dataset-wide jobs (update all, GC, ...) running, or ended in the last JOB_LINGER_SECONDS."""
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
