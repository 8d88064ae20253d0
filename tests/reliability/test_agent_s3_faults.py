"""The agent against a faulty S3: errors, throttling, slowness, cut downloads, the server gone and back.

Each fault ends either in a retry that succeeds within the run, or in a
failed run whose status names the key and the error, with nothing half
applied and nothing after it applied; the next run then catches up and the
store equals a clean replay.
"""

from __future__ import annotations

from urllib.parse import quote

from dmsupdate.agent.runner import Runner
from tests.reliability.conftest import agent_config, publish_small_history, store_snapshot
from tests.reliability.faultproxy import Rule


def get_line(state, key: str) -> str:
    """The start of the request line of a GET of `key` as boto3 sends it (the key's own escapes escaped again)."""
    return f"GET /{state.store.bucket}/dms/{quote(key, safe='/')}"


def clean_replay(state, tmp_path):
    """The store a fault-free replay of the bucket gives: (data quads, applied keys)."""
    config = agent_config(state.root, tmp_path / "clean", state.endpoint)
    assert Runner(config).update()["lastSucceeded"] is True
    return store_snapshot(config.db_dir)


def faulty_agent(state, proxy, tmp_path):
    """An agent reading the bucket through the fault proxy."""
    return agent_config(state.root, tmp_path / "agent", proxy.url)


def assert_stopped_at(config, status, keys, failed_key, clean):
    """The run failed at `failed_key`: named in status, every earlier key applied, nothing from it on."""
    assert status["lastSucceeded"] is False
    assert status["failedKey"] == failed_key, status
    assert failed_key in status["error"] or "S3" in status["error"], status["error"]
    _quads, applied = store_snapshot(config.db_dir)
    index = keys.index(failed_key)
    assert applied == set(keys[:index]), "a key after the failure was applied, or one before it skipped"


def assert_caught_up(config, clean):
    status = Runner(config).update()
    assert status["lastSucceeded"] is True, status
    assert status["failedKey"] is None and status["error"] is None
    assert store_snapshot(config.db_dir) == clean


def test_s3_500_on_an_update_stops_the_run_at_that_key_and_the_next_run_catches_up(
    s3_state, s3_proxy, tmp_path
):
    keys = publish_small_history(s3_state)
    clean = clean_replay(s3_state, tmp_path)
    broken = keys[5]
    s3_proxy.add(Rule(match=get_line(s3_state, broken), action="status", status=500))
    config = faulty_agent(s3_state, s3_proxy, tmp_path)

    status = Runner(config).update()

    assert_stopped_at(config, status, keys, broken, clean)
    assert "InternalError" in status["error"] or "500" in status["error"], status["error"]
    s3_proxy.clear()
    assert_caught_up(config, clean)


def test_s3_503_bursts_are_retried_within_the_run(s3_state, s3_proxy, tmp_path):
    keys = publish_small_history(s3_state)
    clean = clean_replay(s3_state, tmp_path)
    rule = s3_proxy.add(Rule(match=get_line(s3_state, keys[3]), action="status", status=503, times=2))
    config = faulty_agent(s3_state, s3_proxy, tmp_path)

    status = Runner(config).update()

    assert status["lastSucceeded"] is True, status
    assert rule.hits == 2, "the injected 503 answers were not all met"
    assert store_snapshot(config.db_dir) == clean


def test_s3_503_that_does_not_clear_ends_in_a_reported_failure(s3_state, s3_proxy, tmp_path):
    keys = publish_small_history(s3_state)
    clean = clean_replay(s3_state, tmp_path)
    s3_proxy.add(Rule(match=get_line(s3_state, keys[8]), action="status", status=503))
    config = faulty_agent(s3_state, s3_proxy, tmp_path)
    runner = Runner(config)

    status = runner.update()

    assert_stopped_at(config, status, keys, keys[8], clean)
    assert runner.throttled, "a store that keeps answering 503 must make `watch` back off"
    s3_proxy.clear()
    assert_caught_up(config, clean)


def test_a_download_cut_mid_body_fails_the_key_without_applying_part_of_it(s3_state, s3_proxy, tmp_path):
    keys = publish_small_history(s3_state)
    clean = clean_replay(s3_state, tmp_path)
    # keys[4] is a gzip Turtle add: a cut inside it must not load the rows read so far.
    cut = keys[4]
    assert cut.endswith(".ttl.gz")
    s3_proxy.add(Rule(match=get_line(s3_state, cut), action="cut", after_bytes=200))
    config = faulty_agent(s3_state, s3_proxy, tmp_path)

    status = Runner(config).update()

    assert_stopped_at(config, status, keys, cut, clean)
    quads, _applied = store_snapshot(config.db_dir)
    assert not any('"5-' in q for q in quads), "rows of the cut download were loaded"
    s3_proxy.clear()
    assert_caught_up(config, clean)


def test_slow_s3_answers_only_slow_the_run_down(s3_state, s3_proxy, tmp_path):
    publish_small_history(s3_state)
    clean = clean_replay(s3_state, tmp_path)
    rule = s3_proxy.add(Rule(match="GET /", action="stall", delay=1.5, times=4))
    config = faulty_agent(s3_state, s3_proxy, tmp_path)

    status = Runner(config).update()

    assert status["lastSucceeded"] is True, status
    assert rule.hits == 4
    assert store_snapshot(config.db_dir) == clean


def test_s3_server_stopped_mid_run_then_restarted_resumes_where_it_stopped(
    s3_state, s3_proxy, restartable_s3, tmp_path
):
    keys = publish_small_history(s3_state)
    clean = clean_replay(s3_state, tmp_path)
    gone = keys[7]
    # The server stops the moment the agent asks for this key: the request and its retries find no one.
    s3_proxy.add(Rule(match=get_line(s3_state, gone), action="pass", before=restartable_s3.stop))
    config = faulty_agent(s3_state, s3_proxy, tmp_path)

    status = Runner(config).update()

    assert_stopped_at(config, status, keys, gone, clean)
    s3_proxy.clear()

    # Still down: the next run fails at the listing, names no key, and changes nothing.
    status = Runner(config).update()
    assert status["lastSucceeded"] is False and status["failedKey"] is None
    assert "S3 list" in status["error"], status["error"]
    assert store_snapshot(config.db_dir)[1] == set(keys[:7])

    restartable_s3.start()
    assert_caught_up(config, clean)
