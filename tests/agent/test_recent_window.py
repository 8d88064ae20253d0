"""status.json `recent`: the applied keys within the window before the newest, in effective-time order."""

from __future__ import annotations

from dataclasses import replace

from dmsupdate.agent.recent import RecentWindow
from dmsupdate.state.keys import EffectiveTime, format_key, parse_key
from dmsupdate.state.plan import LedgerState, PlanEntry

HOUR = 3600 * 10**9
T0 = EffectiveTime.parse_text("2026-01-01T00:00:00Z").nanos


def key(hours: float, label: str = "src") -> str:
    return format_key(EffectiveTime(T0 + int(hours * HOUR)), label, "update", None, "ru")


def entry(name: str, settles: tuple[str, ...] = ()) -> PlanEntry:
    return replace(PlanEntry.from_key(parse_key(name)), settles=settles)


def test_keys_stay_in_effective_order_whatever_order_they_come_in():
    window = RecentWindow(LedgerState(baseline=None, applied=frozenset({key(3), key(1)})), 24)
    window.add(entry(key(4), settles=(key(2), key(0.5))))
    window.add(entry(key(3.5)))  # older than the newest: goes in its place, the newest stays
    fields = window.fields()
    assert fields["recent"] == [key(0.5), key(1), key(2), key(3), key(3.5), key(4)]
    assert fields["effectiveDate"] == parse_key(key(4)).effective.path


def test_the_window_is_trimmed_as_the_newest_moves_and_a_key_counts_once():
    window = RecentWindow(LedgerState(baseline=EffectiveTime(T0)), 24)
    for hours in range(0, 30):
        window.add(entry(key(hours)))
    window.add(entry(key(29)))  # applied again (a repeated run): listed once
    assert window.fields()["recent"] == [key(h) for h in range(5, 30)]
    window.add(entry(key(31), settles=(key(2),)))  # a settled key older than the window is not listed
    assert window.fields()["recent"] == [key(h) for h in range(7, 30)] + [key(31)]
