"""Unit tests of the replay planner: order, bootstrap, pruning, ledger and late arrivals."""

from __future__ import annotations

from dmsupdate.state.keys import EffectiveTime, format_key
from dmsupdate.state.plan import LedgerState, build_plan, choose_bootstrap, window_start
from dmsupdate.state.stores import ObjectInfo

BASE = EffectiveTime.parse_text("2016-01-15T04:00:00Z")
HOUR = 3600


def t(seconds: float) -> EffectiveTime:
    return EffectiveTime(BASE.nanos + int(seconds * 1_000_000_000))


def key(seconds: float, op: str, arg: str | None = None, fmt: str | None = None, label: str = "pub") -> str:
    defaults = {
        "add": "ttl",
        "replace": "ttl",
        "update": "ru",
        "postproc": "ru",
        "image": "tgz",
        "dump": "nq.gz",
    }
    return format_key(t(seconds), label, op, arg, fmt if fmt is not None else defaults.get(op))


def infos(*keys: str) -> list[ObjectInfo]:
    return [ObjectInfo(key=k, size=1) for k in keys]


def fresh(seconds: float = -1) -> LedgerState:
    return LedgerState(baseline=t(seconds))


def runs(plan) -> list[str]:
    return [e.key for e in plan.entries if e.skip is None]


def test_entries_are_ordered_by_effective_time_then_key():
    late_second = key(1.5, "update")
    first = key(1.25, "update", label="b")
    same_time = key(1.25, "update", label="a")
    plan = build_plan(infos(late_second, first, same_time), fresh(), 24)
    assert runs(plan) == [same_time, first, late_second]


def test_fraction_digits_compare_numerically():
    half = "updates/2016-01-15/04-00-01-5/pub_update.ru"
    forty = "updates/2016-01-15/04-00-01-40/pub_update.ru"
    plan = build_plan(infos(half, forty), fresh(), 24)
    assert runs(plan) == [forty, half]


def test_replace_supersedes_earlier_ops_of_the_same_graph_without_a_barrier():
    add = key(1, "add", "http://g")
    replace1 = key(2, "replace", "http://g")
    other = key(3, "add", "http://other")
    replace2 = key(4, "replace", "http://g")
    plan = build_plan(infos(add, replace1, other, replace2), fresh(), 24)
    assert runs(plan) == [other, replace2]
    skipped = {e.key: e.skip for e in plan.entries if e.skip}
    assert set(skipped) == {add, replace1}
    assert all(replace2 in reason for reason in skipped.values())
    final = next(e for e in plan.entries if e.key == replace2)
    assert set(final.settles) == {add, replace1}


def test_an_update_between_is_a_barrier_to_pruning():
    add = key(1, "add", "http://g")
    update = key(2, "update")
    replace = key(3, "replace", "http://g")
    plan = build_plan(infos(add, update, replace), fresh(), 24)
    assert runs(plan) == [add, update, replace]


def test_a_postproc_between_is_a_barrier_too():
    drop1 = key(1, "drop", "http://g", fmt="")
    post = key(2, "postproc", "stats")
    drop2 = key(3, "drop", "http://g", fmt="")
    plan = build_plan(infos(drop1, post, drop2), fresh(), 24)
    assert runs(plan) == [drop1, post, drop2]


def test_only_the_last_postproc_of_a_component_runs():
    p1 = key(1, "postproc", "stats")
    other = key(2, "postproc", "index")
    p2 = key(3, "postproc", "stats")
    plan = build_plan(infos(p1, other, p2), fresh(), 24)
    assert runs(plan) == [other, p2]
    assert "stats" in next(e.skip for e in plan.entries if e.key == p1)


def test_an_add_after_the_replace_is_not_pruned():
    replace = key(1, "replace", "http://g")
    add = key(2, "add", "http://g")
    plan = build_plan(infos(replace, add), fresh(), 24)
    assert runs(plan) == [replace, add]


def test_bootstrap_takes_the_newest_image_or_dump_and_ignores_extras():
    old = key(1, "image")
    new = key(5, "dump")
    entry, opt, invalid = choose_bootstrap(
        infos(old, new, "images/stats.opt", "images/config.ttl", "images/garbage.bin")
    )
    assert entry is not None and entry.key == new and entry.op == "dump"
    assert opt is not None and opt.key == "images/stats.opt"
    assert invalid == ["images/garbage.bin"]


def test_flat_image_keys_are_accepted():
    entry, _, _ = choose_bootstrap(infos("images/2016-01-15-04-00-00-5_pub_image.tgz"))
    assert entry is not None and entry.op == "image"


def test_bootstrap_plan_replays_only_updates_later_than_the_image():
    image = choose_bootstrap(infos(key(10, "image")))[0]
    before = key(5, "update")
    same = key(10, "update")
    after = key(11, "update")
    plan = build_plan(infos(before, same, after), LedgerState(baseline=None), 24, bootstrap=image)
    assert [e.key for e in plan.entries] == [image.key, after]


def test_applied_keys_are_not_planned_and_unapplied_keys_in_the_window_are():
    done1 = key(100, "update")
    late_in_window = key(50, "update")
    done2 = key(200, "update")
    new = key(300, "update")
    ledger = LedgerState(baseline=t(0), applied=frozenset({done1, done2}))
    plan = build_plan(infos(done1, late_in_window, done2, new), ledger, 24)
    assert runs(plan) == [late_in_window, new]


def test_unapplied_keys_older_than_the_window_are_late_and_never_planned():
    old_applied = key(10, "update")
    late = key(20, "update")
    newest = key(30 * HOUR, "update")
    ledger = LedgerState(baseline=t(0), applied=frozenset({old_applied, newest}))
    plan = build_plan(infos(old_applied, late, newest), ledger, 24)
    assert plan.late == [late]
    assert runs(plan) == []


def test_a_late_replace_superseded_by_an_applied_one_is_settled_not_applied():
    late = key(10, "replace", "http://g")
    applied = key(20, "replace", "http://g")
    ledger = LedgerState(baseline=t(0), applied=frozenset({applied}))
    plan = build_plan(infos(late, applied), ledger, 24)
    assert runs(plan) == []
    assert plan.settled == [late]
    assert "already applied" in plan.entries[0].skip


def test_invalid_keys_are_reported_not_planned():
    good = key(1, "update")
    plan = build_plan(
        infos("updates/2016-01-15/nonsense.txt", good, "updates/2016-01-15/04-00-00-1/x_frob.ru"), fresh(), 24
    )
    assert runs(plan) == [good]
    assert sorted(plan.invalid) == [
        "updates/2016-01-15/04-00-00-1/x_frob.ru",
        "updates/2016-01-15/nonsense.txt",
    ]


def test_window_start_is_window_hours_before_the_newest():
    assert window_start(t(48 * HOUR), 24) == t(24 * HOUR)
    assert LedgerState(baseline=t(0), applied=frozenset({key(5, "update")})).newest == t(5)


def test_plan_json_has_exactly_the_contract_fields():
    entry = build_plan(infos(key(1, "drop", "http://g.example/a.b", fmt="")), fresh(), 24).entries[0]
    assert entry.as_json() == {
        "op": "drop",
        "key": "updates/2016-01-15/04-00-01-000000000/pub_drop_http:%2F%2Fg%2Eexample%2Fa%2Eb",
        "effective": "2016-01-15/04-00-01-000000000",
        "label": "pub",
        "graph": "http://g.example/a.b",
        "component": None,
        "format": None,
        "skip": None,
    }
