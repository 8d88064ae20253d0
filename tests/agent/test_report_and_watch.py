"""Reporting to the control plane after each run, and `watch`'s pacing (jitter, Retry-After, daily full scan)."""

from __future__ import annotations

import json

from dmsupdate.agent.runner import Runner
from dmsupdate.agent.watch import Watcher
from tests.agent.conftest import ttl
from tests.agent.httpfakes import Recorded, local_server
from tests.conftest import free_port

G = "http://example.org/graph/g"


def test_status_is_reported_to_the_control_plane_after_a_run(file_state, make_config, tmp_path):
    file_state.publish_image(0, [], tmp_path)
    file_state.publish(10, "add", ttl("ex:a ex:p ex:o ."), arg=G, fmt="ttl")
    plane = Recorded(status=200)
    with local_server(plane) as url:
        config = make_config(file_state, controlplane={"url": url, "server": "data-1", "token": "agent-key"})
        status = Runner(config).update()

    assert len(plane.requests) == 1
    sent = plane.requests[0]
    assert sent["method"] == "POST" and sent["path"] == "/api/v1/servers/data-1/report/"
    assert sent["headers"]["Authorization"] == "Token agent-key"
    assert json.loads(sent["body"]) == status
    assert json.loads(sent["body"])["applied"] == 2


def test_a_control_plane_that_is_down_never_fails_the_update(file_state, make_config, tmp_path):
    file_state.publish_image(0, [], tmp_path)
    config = make_config(
        file_state, controlplane={"url": f"http://127.0.0.1:{free_port()}", "server": "data-1", "token": "k"}
    )

    status = Runner(config).update()

    assert status["lastSucceeded"] is True and status["applied"] == 1


def test_a_refused_report_is_logged_not_fatal(file_state, make_config, tmp_path, caplog):
    file_state.publish_image(0, [], tmp_path)
    plane = Recorded(status=403)
    with local_server(plane) as url:
        config = make_config(file_state, controlplane={"url": url, "server": "data-1", "token": "bad"})
        status = Runner(config).update()

    assert status["lastSucceeded"] is True
    assert "refused: HTTP 403" in caplog.text


def test_watch_honours_retry_after_from_a_throttling_endpoint(file_state, make_config):
    file_state.publish_dump(0, [])
    throttler = Recorded(status=429, headers={"Retry-After": "120"})
    sleeps: list[float] = []
    with local_server(throttler) as endpoint:
        config = make_config(
            file_state, update_endpoint=f"{endpoint}/update", gsp_endpoint=f"{endpoint}/store"
        )
        runner = Runner(config)
        watcher = Watcher(runner, interval=10, sleep=sleeps.append, rand=lambda: 0.5)
        watcher.run_forever(rounds=3)

    assert (
        len(throttler.requests) == 3
    )  # one attempt per round (the dump's graph listing), no fingerprint query
    status = runner.status()
    assert status["lastSucceeded"] is False and "HTTP 429" in status["error"] and "120" in status["error"]
    assert len(sleeps) == 2 and all(s >= 120 for s in sleeps)


def test_watch_backs_off_on_503_without_retry_after(file_state, make_config):
    file_state.publish_dump(0, [])
    throttler = Recorded(status=503)
    sleeps: list[float] = []
    with local_server(throttler) as endpoint:
        config = make_config(
            file_state, update_endpoint=f"{endpoint}/update", gsp_endpoint=f"{endpoint}/store"
        )
        Watcher(Runner(config), interval=10, sleep=sleeps.append, rand=lambda: 0.5).run_forever(rounds=4)

    assert sleeps == [10, 20, 40]


def test_watch_honours_retry_after_from_the_control_plane(file_state, make_config, tmp_path):
    file_state.publish_image(0, [], tmp_path)
    plane = Recorded(status=429, headers={"Retry-After": "90"})
    sleeps: list[float] = []
    with local_server(plane) as url:
        config = make_config(file_state, controlplane={"url": url, "server": "s", "token": "t"})
        Watcher(Runner(config), interval=10, sleep=sleeps.append, rand=lambda: 0.5).run_forever(rounds=2)

    assert sleeps == [90]


def test_watch_jitters_its_interval_and_full_scans_and_verifies_once_a_day(file_state, make_config, tmp_path):
    file_state.publish_image(0, [], tmp_path)
    config = make_config(file_state)
    now = [0.0]
    calls: list[tuple[bool, bool]] = []

    class Recording(Runner):
        def update(self, full_scan: bool = False, verify: bool = False):
            calls.append((full_scan, verify))
            return super().update(full_scan=full_scan, verify=verify)

    randoms = iter([0.0, 1.0, 0.5, 0.25])
    watcher = Watcher(
        Recording(config),
        interval=100,
        sleep=lambda s: now.__setitem__(0, now[0] + s),
        clock=lambda: now[0],
        rand=lambda: next(randoms),
    )
    pauses = [watcher.run_once() for _ in range(2)]
    now[0] += 24 * 3600
    pauses += [watcher.run_once() for _ in range(2)]

    assert pauses == [80, 120, 100, 90]
    # The daily full scan also computes the full fingerprint by a scan of the whole store.
    assert calls == [(True, True), (False, False), (True, True), (False, False)]


def test_watch_rebuilds_when_the_control_plane_answers_a_report_with_a_rebuild_request(
    file_state, make_config, tmp_path
):
    file_state.publish_image(0, [], tmp_path)
    file_state.publish(10, "add", ttl("ex:a ex:p ex:o ."), arg=G, fmt="ttl")
    plane = Recorded(status=200, answer={"server": "data-1", "rebuild": True})
    with local_server(plane) as url:
        config = make_config(file_state, controlplane={"url": url, "server": "data-1", "token": "agent-key"})
        watcher = Watcher(Runner(config), interval=60, sleep=lambda s: None)
        watcher.run_once()
        plane.answer = {"server": "data-1", "rebuild": False}
        watcher.run_once()
        watcher.run_once()

    runs = [json.loads(r["body"])["lastRun"] for r in plane.requests]
    assert runs == ["update", "rebuild", "update"]
    rebuilt = json.loads(plane.requests[1]["body"])
    assert rebuilt["lastSucceeded"] is True and rebuilt["applied"] == 2  # image, then the add again
