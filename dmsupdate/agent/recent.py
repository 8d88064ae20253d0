"""status.json `effectiveDate` and `recent` while a run applies keys (DESIGN §5).

`recent` is every applied key within the window before the newest one, in
effective-time order, and status.json is rewritten after every operation: the
keys are kept in that order as they come (a run applies them in order, so each
new key almost always goes at the end), and the window is trimmed from the
front, so an operation costs the same however many keys the window holds.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from typing import Any

from dmsupdate.state.keys import EffectiveTime, InvalidKey, parse_key
from dmsupdate.state.plan import LedgerState, PlanEntry, window_start


class RecentWindow:
    """The newest applied effective time and the keys applied within the window before it."""

    def __init__(self, state: LedgerState, window_hours: float) -> None:
        self.window_hours = window_hours
        self.newest: EffectiveTime | None = state.baseline
        self._order: list[tuple[int, str]] = []  # (effective nanos, key), sorted
        self._keys: set[str] = set()
        for key in state.applied:
            self._note(key, _effective(key))
        if self._order:
            last = EffectiveTime(self._order[-1][0])
            if self.newest is None or last > self.newest:
                self.newest = last
        self._trim()

    def add(self, entry: PlanEntry) -> None:
        """Record an applied entry and the keys it settles."""
        self._note(entry.key, entry.effective)
        for key in entry.settles:
            self._note(key, _effective(key))
        if self.newest is None or entry.effective > self.newest:
            self.newest = entry.effective
        self._trim()

    def fields(self) -> dict[str, Any]:
        return {
            "effectiveDate": self.newest.path if self.newest else None,
            "recent": [key for _, key in self._order],
        }

    def _note(self, key: str, effective: EffectiveTime | None) -> None:
        if effective is None or key in self._keys:
            return
        self._keys.add(key)
        item = (effective.nanos, key)
        if not self._order or item > self._order[-1]:
            self._order.append(item)
        else:
            insort(self._order, item)

    def _trim(self) -> None:
        if self.newest is None or not self._order:
            return
        start = window_start(self.newest, self.window_hours).nanos
        cut = bisect_left(self._order, (start, ""))
        if cut:
            for _, key in self._order[:cut]:
                self._keys.discard(key)
            del self._order[:cut]


def _effective(key: str) -> EffectiveTime | None:
    try:
        return parse_key(key).effective
    except InvalidKey:
        return None
