"""The servers replaying a dataset, as the registry sees them: how far each has applied.

Publications needs this to tell "applied on k of N" and what GC must keep,
but the servers app sits above it (servers import publications). So the
servers app provides the answer (`provide`, in its AppConfig.ready) and
publications asks through `replicas_of`, never importing servers.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Replica:
    """One server of a dataset: its name, whether it is enabled, its effective time and state."""

    pk: int
    name: str
    enabled: bool
    effective_ns: int | None
    late_keys: tuple[str, ...] = ()
    state: str = ""

    def has_applied(self, effective_ns: int) -> bool:
        return self.effective_ns is not None and self.effective_ns >= effective_ns


# dataset ids, with_state -> {dataset id: its servers, by name}
Source = Callable[[Iterable[int], bool], dict[int, list[Replica]]]
_source: Source | None = None


def provide(source: Source) -> None:
    """Set where replicas come from (the servers app, at start-up)."""
    global _source
    _source = source


def replicas_of(dataset_ids: Iterable[int], with_state: bool = False) -> dict[int, list[Replica]]:
    """The servers of each dataset (every one, enabled or not), with their state when asked."""
    ids = list(dataset_ids)
    found = _source(ids, with_state) if _source is not None else {}
    return {pk: found.get(pk, []) for pk in ids}


@dataclass(frozen=True)
class AppliedOn:
    """ "applied on k of N": k enabled servers have applied it, of the dataset's N enabled servers."""

    applied: int
    total: int


def applied_on(events: Iterable[Any]) -> dict[int, AppliedOn]:
    """AppliedOn of each publication (anything with pk, dataset_id, effective_ns), by pk.

    One read of the servers of every dataset involved, then a binary search per publication.
    """
    events = list(events)
    reached: dict[int, list[int]] = {}
    totals: dict[int, int] = {}
    for dataset_id, replicas in replicas_of({e.dataset_id for e in events}).items():
        enabled = [r for r in replicas if r.enabled]
        totals[dataset_id] = len(enabled)
        reached[dataset_id] = sorted(r.effective_ns for r in enabled if r.effective_ns is not None)
    counts = {}
    for event in events:
        values = reached[event.dataset_id]
        counts[event.pk] = AppliedOn(
            len(values) - bisect_left(values, event.effective_ns), totals[event.dataset_id]
        )
    return counts
