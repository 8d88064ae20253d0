"""GET /ready: 200 while the store is within ready_max_lag_seconds of the newest update seen, else 503 with why."""

from __future__ import annotations

import time

import requests

from dmsupdate.agent.ready import note_seen, read_seen
from dmsupdate.agent.runner import Runner
from tests.agent.conftest import at, ttl

G = "http://example.org/graph/g"


def wait_ready(base: str, code: int) -> dict:
    deadline = time.monotonic() + 20
    while True:
        answer = requests.get(base + "/ready", timeout=10)
        if answer.status_code == code or time.monotonic() > deadline:
            assert answer.status_code == code, answer.text
            return answer.json()
        time.sleep(0.05)


def test_ready_flips_to_503_while_behind_and_back_to_200_after_catching_up(
    state, make_config, tmp_path, serve
):
    state.publish_image(0, [], tmp_path)
    state.publish(10, "add", ttl("ex:a ex:p ex:o ."), arg=G, fmt="ttl")
    config = make_config(state, ready_max_lag_seconds=300, ready_check_seconds=0.2)
    base = serve(config)
    before = wait_ready(base, 503)
    assert before["ready"] is False and before["reason"] == "the last run did not succeed"
    assert requests.post(base + "/update?wait=60", timeout=70).status_code == 200
    ok = wait_ready(base, 200)
    assert ok["ready"] is True and ok["lagSeconds"] == 0
    assert requests.get(base + "/status", timeout=10).json()["lastSucceeded"] is True  # /status as before

    # A newer update 200 s later: still within 300 s, ready. One 1,000 s later: behind.
    state.publish(210, "add", ttl("ex:b ex:p ex:o ."), arg=G, fmt="ttl")
    time.sleep(0.25)
    assert wait_ready(base, 200)["lagSeconds"] == 200
    state.publish(1210, "add", ttl("ex:c ex:p ex:o ."), arg=G, fmt="ttl")
    time.sleep(0.25)
    behind = wait_ready(base, 503)
    assert behind["lagSeconds"] == 1200
    assert "1200 s behind the newest update in the root" in behind["reason"]

    assert requests.post(base + "/update?wait=60", timeout=70).json()["lastSucceeded"] is True
    caught_up = wait_ready(base, 200)
    assert caught_up["lagSeconds"] == 0


def test_knowledge_older_than_the_check_interval_is_checked_again(file_state, make_config, tmp_path):
    file_state.publish_image(0, [], tmp_path)
    config = make_config(file_state, ready_check_seconds=60)
    Runner(config).update()
    seen = read_seen(config.root_head_path)
    assert seen is not None and seen.newest_ns == at(0).nanos
    # What a head poll said later only moves it forward.
    note_seen(config.root_head_path, at(5).nanos)
    note_seen(config.root_head_path, at(1).nanos)
    assert read_seen(config.root_head_path).newest_ns == at(5).nanos


def test_a_root_that_cannot_be_checked_means_not_ready(file_state, make_config, tmp_path, serve):
    file_state.publish_image(0, [], tmp_path)
    config = make_config(file_state, ready_check_seconds=0.1)
    Runner(config).update()
    base = serve(make_config(file_state, ready_check_seconds=0.1, s3root="file:///nonexistent/root"))
    time.sleep(0.15)
    answer = wait_ready(base, 503)
    assert answer["ready"] is False and answer["reason"].startswith("cannot check the state root"), answer
