"""Keys planted in the bucket with a far-future date (bypassing the API's 5-minute rule).

Applied, such a key would become the server's effective time and push every later
real publication out of the replay window. The agent defers it instead: not applied,
not recorded, reported in `skipped` with the reason, applied once it is due.
"""

from __future__ import annotations

import io

from dmsupdate.agent.runner import Runner
from dmsupdate.state.keys import EffectiveTime, format_key
from dmsupdate.state.plan import MAX_AHEAD_SECONDS, horizon, split_due
from dmsupdate.state.stores import ObjectInfo
from tests.agent.conftest import graph_triples, quad, store_quads, ttl

G = "http://example.org/graph/g"
YEAR_2200 = EffectiveTime.parse_text("2200-01-01T00:00:00Z")


def plant(state, when: EffectiveTime, op: str, body: bytes | str, arg: str | None, fmt: str) -> str:
    body = body.encode() if isinstance(body, str) else body
    key = format_key(when, "planted", op, arg, fmt)
    state.store.put_new(key, io.BytesIO(body), len(body))
    return key


def test_split_due_defers_only_keys_beyond_the_horizon():
    now = EffectiveTime.parse_text("2026-12-01T00:00:00Z")
    until = horizon(now)
    soon = format_key(EffectiveTime(now.nanos + (MAX_AHEAD_SECONDS - 1) * 10**9), "a", "update", None, "ru")
    later = format_key(EffectiveTime(now.nanos + (MAX_AHEAD_SECONDS + 1) * 10**9), "a", "update", None, "ru")
    due, deferred = split_due([ObjectInfo(key=soon, size=1), ObjectInfo(key=later, size=1)], until)
    assert [i.key for i in due] == [soon] and deferred == [later]
    assert split_due([ObjectInfo(key=later, size=1)], None) == ([ObjectInfo(key=later, size=1)], [])


def test_a_planted_far_future_update_neither_applies_nor_wedges_the_window(file_state, make_config):
    file_state.publish_dump(0, [quad("s", "p", "o", G)])
    planted = plant(file_state, YEAR_2200, "replace", ttl("ex:planted ex:p ex:o ."), G, "ttl")
    first = file_state.publish(10, "add", ttl("ex:a ex:p ex:o ."), arg=G, fmt="ttl")
    config = make_config(file_state)

    status = Runner(config).update()
    assert status["lastSucceeded"] is True and status["applied"] == 2  # the dump and `first`
    assert first in status["recent"] and planted not in status["recent"]
    assert status["effectiveDate"].startswith("2016-01-15/")
    assert [s["key"] for s in status["skipped"]] == [planted]
    assert "ahead of this server's clock" in status["skipped"][0]["reason"]

    # A real publication after the planted one is still inside the window: applied.
    second = file_state.publish(20, "add", ttl("ex:b ex:p ex:o ."), arg=G, fmt="ttl")
    status = Runner(config).update()
    assert status["lastSucceeded"] is True and status["applied"] == 1 and second in status["recent"]
    assert not status.get("late")
    triples = graph_triples(store_quads(config.db_dir), G)
    assert not any("planted" in t for t in triples)
    assert {"<http://example.org/a> <http://example.org/p> <http://example.org/o>"} <= triples


def test_a_planted_far_future_image_is_not_chosen_to_start_a_server(file_state, make_config, tmp_path):
    file_state.publish_dump(0, [quad("s", "p", "o", G)])
    planted = plant(file_state, YEAR_2200, "dump", b"", None, "nq.gz")
    real = file_state.publish(10, "add", ttl("ex:a ex:p ex:o ."), arg=G, fmt="ttl")
    config = make_config(file_state)

    status = Runner(config).update()
    assert status["lastSucceeded"] is True and status["image"] != planted
    assert real in status["recent"]
    assert planted in [s["key"] for s in status["skipped"]]
