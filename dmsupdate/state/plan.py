"""The replay planner (DESIGN §4): what a server must do to catch up with a state root.

Pure functions over listings and the agent's ledger; no I/O. The agent runs the
plan, the control plane may use it to explain what a server would do next.

Rules implemented here:
- order by effective time, then key;
- bootstrap from the newest image or dump when there is no database, then every
  update later than it;
- an earlier `add`/`replace`/`drop` of a graph is skipped when a later
  `replace`/`drop` of the same graph follows with no `update`/`postproc` between
  them (SPARQL updates may read the graph, so they are barriers);
- of several `postproc` with the same component only the last runs;
- keys the ledger already holds are never planned again; keys inside the
  late-arrival window that the ledger lacks are planned; keys older than the
  window (and later than the bootstrap) that the ledger lacks are *late*:
  reported, never applied;
- keys dated more than `MAX_AHEAD_SECONDS` ahead of the server's clock (an image or
  update planted with a far-future date would otherwise end every later replay
  window) are *deferred*: neither applied nor recorded, planned again once due.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from dmsupdate.state.keys import (
    GRAPH_OPS,
    NANOS,
    SPARQL_OPS,
    EffectiveTime,
    InvalidKey,
    StateKey,
    parse_key,
)
from dmsupdate.state.stores import ObjectInfo

OVERWRITING_OPS = ("replace", "drop")
# How far ahead of the clock an effective time may be and still be applied (DESIGN §6's rule).
MAX_AHEAD_SECONDS = 300


def horizon(now: EffectiveTime) -> EffectiveTime:
    """The latest effective time a server whose clock reads `now` applies."""
    return EffectiveTime(now.nanos + MAX_AHEAD_SECONDS * NANOS)


def split_due(
    listing: Iterable[ObjectInfo], until: EffectiveTime | None
) -> tuple[list[ObjectInfo], list[str]]:
    """The objects due by `until` and the keys of those dated later (deferred); None: all due."""
    due: list[ObjectInfo] = []
    deferred: list[str] = []
    for info in listing:
        effective = _effective(info.key)
        if until is not None and effective is not None and effective > until:
            deferred.append(info.key)
        else:
            due.append(info)
    return due, deferred


def deferred_reason(until: EffectiveTime) -> str:
    return (
        f"dated more than {MAX_AHEAD_SECONDS // 60} minutes ahead of this server's clock "
        f"(after {until.isoformat()}); deferred until then"
    )


@dataclass(frozen=True)
class PlanEntry:
    """One operation of a plan; `skip` says why it will not run (None: it runs)."""

    op: str
    key: str
    effective: EffectiveTime
    label: str | None
    graph: str | None
    component: str | None
    format: str | None
    skip: str | None = None
    # Keys made redundant by this entry: recorded in the ledger together with it.
    settles: tuple[str, ...] = field(default=(), compare=False)
    info: ObjectInfo | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_key(cls, parsed: StateKey, info: ObjectInfo | None = None) -> PlanEntry:
        """Build an entry from a parsed key (an update, an image or a dump)."""
        assert parsed.op is not None and parsed.effective is not None
        return cls(
            op=parsed.op,
            key=parsed.key,
            effective=parsed.effective,
            label=parsed.label,
            graph=parsed.graph,
            component=parsed.component,
            format=parsed.format,
            info=info,
        )

    @property
    def runs(self) -> bool:
        return self.skip is None

    def as_json(self) -> dict[str, str | None]:
        """The `plan --json` form (DESIGN §5), effective time in key form."""
        return {
            "op": self.op,
            "key": self.key,
            "effective": self.effective.path,
            "label": self.label,
            "graph": self.graph,
            "component": self.component,
            "format": self.format,
            "skip": self.skip,
        }

    def as_line(self) -> str:
        """One human-readable line for `plan`."""
        line = f"{self.op:<8} {self.effective.path}  {self.key}"
        return f"{line}  [skip: {self.skip}]" if self.skip else line


@dataclass
class Plan:
    """A plan plus what the listing revealed on the side."""

    entries: list[PlanEntry] = field(default_factory=list)
    # Unapplied keys made redundant by an operation already applied: the agent
    # records them in the ledger at once so they are never applied later.
    settled: list[str] = field(default_factory=list)
    late: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    # Keys dated too far ahead of the clock: not applied now, not recorded (see `split_due`).
    deferred: list[str] = field(default_factory=list)
    bootstrap: PlanEntry | None = None

    @property
    def to_run(self) -> list[PlanEntry]:
        return [e for e in self.entries if e.runs]


@dataclass(frozen=True)
class LedgerState:
    """What the agent has applied since its bootstrap."""

    baseline: EffectiveTime | None  # effective time of the image/dump (or migrated status)
    applied: frozenset[str] = frozenset()
    bootstrap_key: str | None = None

    @property
    def newest(self) -> EffectiveTime | None:
        """Effective time of the newest applied key (the baseline when none)."""
        best = self.baseline
        for key in self.applied:
            try:
                eff = parse_key(key).effective
            except InvalidKey:
                continue
            if eff is not None and (best is None or eff > best):
                best = eff
        return best


def window_start(newest: EffectiveTime, window_hours: float) -> EffectiveTime:
    """Start of the late-arrival window: `window_hours` of effective time before `newest`."""
    return EffectiveTime(max(0, newest.nanos - int(window_hours * 3600 * NANOS)))


def choose_bootstrap(images: Iterable[ObjectInfo]) -> tuple[PlanEntry | None, ObjectInfo | None, list[str]]:
    """The newest image or dump, the newest `.opt` file, and the invalid keys under `images/`."""
    best: StateKey | None = None
    best_info: ObjectInfo | None = None
    opt: ObjectInfo | None = None
    invalid: list[str] = []
    for info in images:
        try:
            parsed = parse_key(info.key)
        except InvalidKey:
            invalid.append(info.key)
            continue
        if parsed.kind == "extra":
            if info.key.endswith(".opt") and (opt is None or info.key > opt.key):
                opt = info
            continue
        if best is None or parsed.sort_key > best.sort_key:
            best, best_info = parsed, info
    entry = PlanEntry.from_key(best, best_info) if best is not None else None
    return entry, opt, invalid


def build_plan(
    listing: Iterable[ObjectInfo],
    ledger: LedgerState,
    window_hours: float,
    bootstrap: PlanEntry | None = None,
    until: EffectiveTime | None = None,
) -> Plan:
    """Plan the replay of `listing` (keys under `updates/`) for a server with `ledger`.

    With `bootstrap`, the server is (re)initialised from that image/dump first and
    the ledger is ignored. The listing may be the window listing or a full scan:
    keys older than the window are classified as late either way. Keys dated after
    `until` (the server's `horizon`) are deferred.
    """
    listing, deferred = split_due(listing, until)
    plan = Plan(bootstrap=bootstrap, deferred=deferred)
    if bootstrap is not None:
        baseline: EffectiveTime | None = bootstrap.effective
        applied: frozenset[str] = frozenset()
        start: EffectiveTime | None = None
    else:
        baseline = ledger.baseline
        applied = ledger.applied
        newest = ledger.newest
        start = window_start(newest, window_hours) if newest is not None else None

    timeline: list[tuple[StateKey, ObjectInfo]] = []
    for info in listing:
        try:
            parsed = parse_key(info.key)
        except InvalidKey:
            plan.invalid.append(info.key)
            continue
        if parsed.kind != "update" or parsed.effective is None:
            continue
        if baseline is not None and parsed.effective <= baseline:
            continue  # contained in the image/dump the server started from
        if parsed.key not in applied and start is not None and parsed.effective < start:
            plan.late.append(parsed.key)
            continue
        timeline.append((parsed, info))
    timeline.sort(key=lambda item: item[0].sort_key)
    plan.late.sort(key=lambda k: parse_key(k).sort_key)

    entries = [PlanEntry.from_key(parsed, info) for parsed, info in timeline]
    done = [e.key in applied for e in entries]
    skips, settler = _prune(entries)
    settles: dict[int, list[str]] = {}
    for i, entry in enumerate(entries):
        if done[i] or skips[i] is None:
            continue
        j = settler[i]
        reason = skips[i] or ""
        if done[j]:
            reason += " (already applied)"
            plan.settled.append(entry.key)
        else:
            settles.setdefault(j, []).append(entry.key)
        entries[i] = _with(entry, skip=reason)
    for j, keys in settles.items():
        entries[j] = _with(entries[j], settles=tuple(keys))
    plan.entries = ([bootstrap] if bootstrap is not None else []) + [
        e for i, e in enumerate(entries) if not done[i]
    ]
    return plan


def _effective(key: str) -> EffectiveTime | None:
    try:
        return parse_key(key).effective
    except InvalidKey:
        return None


def _with(entry: PlanEntry, **changes: object) -> PlanEntry:
    return replace(entry, **changes)  # type: ignore[arg-type]


def _prune(entries: list[PlanEntry]) -> tuple[list[str | None], list[int]]:
    """Skip reasons per entry and, for skipped ones, the index of the entry that settles them.

    Walks backwards: `overwriter[g]` is the entry that will overwrite graph g
    with nothing in between that could read it; any SPARQL update clears it.
    """
    skips: list[str | None] = [None] * len(entries)
    settler: list[int] = list(range(len(entries)))
    overwriter: dict[str, int] = {}
    last_postproc: dict[str, int] = {}
    for i in range(len(entries) - 1, -1, -1):
        entry = entries[i]
        if entry.op in SPARQL_OPS:
            overwriter.clear()  # a SPARQL update may read any graph: a barrier
            if entry.op == "postproc" and entry.component is not None:
                later = last_postproc.get(entry.component)
                if later is not None:
                    skips[i] = (
                        f"superseded by a later postproc of component {entry.component!r} "
                        f"({entries[later].key})"
                    )
                    settler[i] = later
                else:
                    last_postproc[entry.component] = i
            continue
        if entry.op not in GRAPH_OPS or entry.graph is None:
            continue
        later = overwriter.get(entry.graph)
        if later is not None:
            skips[i] = f"superseded by {entries[later].op} of the same graph ({entries[later].key})"
            settler[i] = later
        if entry.op in OVERWRITING_OPS and later is None:
            overwriter[entry.graph] = i
    return skips, settler
