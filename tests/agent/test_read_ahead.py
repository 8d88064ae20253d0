"""The next operation's object read ahead while the endpoint works (dmsupdate.agent.readahead)."""

from __future__ import annotations

import threading

import pytest

from dmsupdate.agent.readahead import ReadAhead
from dmsupdate.agent.runner import Runner
from tests.agent.conftest import ttl
from tests.agent.test_replay_sparql import G1, endpoint_config, in_graph, server_quads


class Body:
    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_what_was_read_ahead_for_a_key_is_what_its_turn_takes():
    ahead = ReadAhead()
    threads: list[str] = []

    def read() -> Body:
        threads.append(threading.current_thread().name)
        return Body("b")

    ahead.start("k2", read)
    taken = ahead.take("k2", lambda: Body("read now"))
    ahead.close()
    assert taken.name == "b" and threads and threads[0].startswith("read-ahead")


def test_a_read_for_another_key_is_closed_and_the_turn_reads_now():
    ahead = ReadAhead()
    early = Body("early")
    ahead.start("k2", lambda: early)
    taken = ahead.take("k3", lambda: Body("now"))
    assert taken.name == "now" and early.closed
    ahead.close()


def test_a_failed_read_is_raised_at_its_own_turn_and_not_before():
    ahead = ReadAhead()

    def fails() -> Body:
        raise OSError("the object vanished")

    ahead.start("k2", fails)  # nothing raised here
    with pytest.raises(OSError, match="vanished"):
        ahead.take("k2", lambda: Body("now"))
    ahead.close()


def test_what_the_run_never_reached_is_closed():
    ahead = ReadAhead()
    left = Body("left")
    ahead.start("k9", lambda: left)
    ahead.close()
    assert left.closed


def test_a_bad_object_read_ahead_fails_the_run_at_its_own_key(file_state, make_config, oxigraph_server):
    file_state.publish_dump(0, [])
    first = file_state.publish(10, "add", ttl("ex:a ex:p ex:o ."), arg=G1, fmt="ttl")
    bad = file_state.publish(
        20, "update", "LOAD <http://169.254.169.254/latest> INTO GRAPH <http://g>", fmt="ru"
    )
    file_state.publish(30, "add", ttl("ex:late ex:p ex:o ."), arg=G1, fmt="ttl")
    config = endpoint_config(make_config, file_state, oxigraph_server)

    status = Runner(config).update()

    assert status["lastSucceeded"] is False and status["failedKey"] == bad and "LOAD" in status["error"]
    assert status["applied"] == 2 and status["recent"] == [first]  # the dump, then the first add
    assert in_graph(server_quads(oxigraph_server), G1) == {
        "<http://example.org/a> <http://example.org/p> <http://example.org/o>"
    }
