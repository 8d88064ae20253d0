"""Pruning, late arrivals and failures, replayed into the embedded store."""

from __future__ import annotations

import io

from dmsupdate.agent.runner import Runner
from tests.agent.conftest import graph_triples, quad, store_quads, ttl

G = "http://example.org/graph/g"
HOUR = 3600


def test_pruned_replace_is_skipped_with_its_reason_and_never_applied_later(state, make_config, tmp_path):
    state.publish_image(0, [], tmp_path)
    first = state.publish(10, "replace", ttl("ex:first ex:p ex:o ."), arg=G, fmt="ttl")
    second = state.publish(20, "replace", ttl("ex:second ex:p ex:o ."), arg=G, fmt="ttl")
    config = make_config(state)
    runner = Runner(config)

    plan = runner.plan()

    skipped = {e.key: e.skip for e in plan if e.skip}
    assert list(skipped) == [first] and second in skipped[first]
    status = runner.update()
    assert status["applied"] == 2  # image + second replace
    assert first in status["recent"] and second in status["recent"]
    assert graph_triples(store_quads(config.db_dir), G) == {
        "<http://example.org/second> <http://example.org/p> <http://example.org/o>"
    }
    assert runner.plan() == []


def test_an_update_between_two_replaces_keeps_both(state, make_config, tmp_path):
    state.publish_image(0, [], tmp_path)
    state.publish(10, "replace", ttl("ex:first ex:p ex:o ."), arg=G, fmt="ttl")
    state.publish(
        15,
        "update",
        f"INSERT {{ GRAPH <http://example.org/copy> {{ ?s ?p ?o }} }} WHERE {{ GRAPH <{G}> {{ ?s ?p ?o }} }}",
        fmt="ru",
    )
    state.publish(20, "replace", ttl("ex:second ex:p ex:o ."), arg=G, fmt="ttl")
    config = make_config(state)

    status = Runner(config).update()

    assert status["applied"] == 4
    assert graph_triples(store_quads(config.db_dir), "http://example.org/copy") == {
        "<http://example.org/first> <http://example.org/p> <http://example.org/o>"
    }


def test_late_arrival_inside_the_window_is_applied(state, make_config, tmp_path):
    state.publish_image(0, [], tmp_path)
    state.publish(2 * HOUR, "add", ttl("ex:on-time ex:p ex:o ."), arg=G, fmt="ttl")
    config = make_config(state)
    Runner(config).update()
    late = state.publish(1 * HOUR, "add", ttl("ex:late ex:p ex:o ."), arg=G, fmt="ttl")

    status = Runner(config).update()

    assert status["applied"] == 1 and late in status["recent"]
    assert "<http://example.org/late> <http://example.org/p> <http://example.org/o>" in graph_triples(
        store_quads(config.db_dir), G
    )


def test_late_arrival_outside_the_window_is_never_applied_and_full_scan_reports_it(
    state, make_config, tmp_path
):
    state.publish_image(0, [], tmp_path)
    state.publish(30 * HOUR, "add", ttl("ex:on-time ex:p ex:o ."), arg=G, fmt="ttl")
    config = make_config(state)
    Runner(config).update()
    late = state.publish(1 * HOUR, "add", ttl("ex:late ex:p ex:o ."), arg=G, fmt="ttl")

    normal = Runner(config).update()
    scan = Runner(config).update(full_scan=True)

    assert normal["applied"] == 0 and normal["late"] == []
    assert scan["applied"] == 0 and scan["late"] == [late]
    assert graph_triples(store_quads(config.db_dir), G) == {
        "<http://example.org/on-time> <http://example.org/p> <http://example.org/o>"
    }


def test_a_failing_update_stops_the_run_names_the_key_and_is_retried(file_state, make_config, tmp_path):
    state = file_state
    state.publish_image(0, [], tmp_path)
    state.publish(10, "add", ttl("ex:before ex:p ex:o ."), arg=G, fmt="ttl")
    broken = state.publish(20, "add", b"not gzip at all", arg=G, fmt="ttl.gz")
    after = state.publish(30, "add", ttl("ex:after ex:p ex:o ."), arg=G, fmt="ttl")
    config = make_config(state)

    failed = Runner(config).update()

    assert failed["lastSucceeded"] is False
    assert failed["failedKey"] == broken and failed["error"]
    assert failed["applied"] == 2
    assert failed["effectiveDate"] == "2016-01-15/04-00-10-000000000"
    assert graph_triples(store_quads(config.db_dir), G) == {
        "<http://example.org/before> <http://example.org/p> <http://example.org/o>"
    }
    # The object is repaired (a transient read fault): the next run retries it, then goes on.
    import gzip

    fixed = gzip.compress(ttl("ex:fixed ex:p ex:o .").encode())
    state.store.put(broken, io.BytesIO(fixed), len(fixed))
    retried = Runner(config).update()
    assert retried["lastSucceeded"] is True and retried["failedKey"] is None and retried["error"] is None
    assert retried["applied"] == 2 and after in retried["recent"]


def test_a_bad_sparql_update_fails_without_changing_the_store(state, make_config, tmp_path):
    state.publish_image(0, [quad("kept", "p", "o")], tmp_path)
    bad = state.publish(10, "update", "INSERT DATA { this is not sparql", fmt="ru")
    config = make_config(state)

    status = Runner(config).update()
    again = Runner(config).update()

    assert status["failedKey"] == bad and status["error"]
    assert again["failedKey"] == bad and again["applied"] == 0
    assert store_quads(config.db_dir) == {
        "<http://example.org/kept> <http://example.org/p> <http://example.org/o> DEFAULT"
    }


def test_a_replace_with_a_bad_file_leaves_the_graph_as_it_was(file_state, make_config, tmp_path):
    file_state.publish_image(0, [quad("kept", "p", "o", G)], tmp_path)
    bad = file_state.publish(10, "replace", "<broken", arg=G, fmt="nt")
    config = make_config(file_state)

    status = Runner(config).update()

    assert status["failedKey"] == bad
    assert graph_triples(store_quads(config.db_dir), G) == {
        "<http://example.org/kept> <http://example.org/p> <http://example.org/o>"
    }


def test_invalid_keys_are_listed_in_status_and_never_applied(file_state, make_config, tmp_path):
    file_state.publish_image(0, [], tmp_path)
    (file_state.store.base / "updates/2016-01-15/04-00-05-0").mkdir(parents=True)
    (file_state.store.base / "updates/2016-01-15/04-00-05-0/stray.txt").write_text("x")
    config = make_config(file_state)

    status = Runner(config).update()

    assert status["lastSucceeded"] is True
    assert status["invalid"] == ["updates/2016-01-15/04-00-05-0/stray.txt"]


def test_no_image_to_start_from_is_a_clear_failure(state, make_config):
    status = Runner(make_config(state)).update()
    assert status["lastSucceeded"] is False
    assert "no image or dump" in status["error"]
