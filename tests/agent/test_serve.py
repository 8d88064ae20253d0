"""`dms-update serve`: the HTTP contract the control plane's trigger-and-wait job relies on."""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests

from dmsupdate.agent.serve import parse_bind
from dmsupdate.agent.status import RunLock
from tests.agent.conftest import ttl
from tests.agent.httpfakes import SPARQL_OK, Recorded, local_server

TOKEN = "s3cret-agent-token"
G = "http://example.org/graph/g"


def auth(scheme: str = "Bearer") -> dict[str, str]:
    return {"Authorization": f"{scheme} {TOKEN}"}


def test_every_endpoint_requires_the_agent_token(file_state, make_config, serve):
    base = serve(make_config(file_state, agent_token=TOKEN))

    for method, path in (("GET", "/status"), ("POST", "/update"), ("POST", "/rebuild"), ("POST", "/verify")):
        r = requests.request(method, base + path, timeout=10)
        assert r.status_code == 401
        assert r.json()["error"] == "unauthorized"
        wrong = requests.request(method, base + path, headers={"Authorization": "Bearer nope"}, timeout=10)
        assert wrong.status_code == 401

    assert requests.get(base + "/status", headers=auth(), timeout=10).status_code == 200
    assert requests.get(base + "/status", headers=auth("Token"), timeout=10).status_code == 200


def test_update_with_wait_answers_with_the_final_status(file_state, make_config, serve, tmp_path):
    file_state.publish_image(0, [], tmp_path)
    add = file_state.publish(10, "add", ttl("ex:a ex:p ex:o ."), arg=G, fmt="ttl")
    base = serve(make_config(file_state, agent_token=TOKEN))

    r = requests.post(base + "/update?wait=60", headers=auth(), timeout=70)

    assert r.status_code == 200
    body = r.json()
    assert body["lastSucceeded"] is True and body["applied"] == 2 and body["recent"] == [add]
    assert body["running"] is False
    status = requests.get(base + "/status", headers=auth(), timeout=10).json()
    assert status["effectiveDate"] == "2016-01-15/04-00-10-000000000" and status["running"] is False


def test_verify_with_wait_answers_with_the_full_fingerprint(file_state, make_config, serve, tmp_path):
    file_state.publish_image(0, [], tmp_path)
    file_state.publish(10, "add", ttl("ex:a ex:p ex:o .", "ex:a ex:p ex:b ."), arg=G, fmt="ttl")
    base = serve(make_config(file_state, agent_token=TOKEN))
    counted = requests.post(base + "/update?wait=60", headers=auth(), timeout=70).json()["fingerprint"]
    assert counted["mode"] == "counts" and counted["graphs"][G] == {"triples": 2, "hash": None}

    r = requests.post(base + "/verify?wait=60", headers=auth(), timeout=70)

    assert r.status_code == 200
    fingerprint = r.json()["fingerprint"]
    assert fingerprint["mode"] == "full" and fingerprint["graphs"][G]["triples"] == 2
    assert len(fingerprint["graphs"][G]["hash"]) == 32
    assert requests.get(base + "/status", headers=auth(), timeout=10).json()["fingerprint"] == fingerprint


def test_a_second_trigger_while_running_is_409_and_without_wait_202(file_state, make_config, serve):
    file_state.publish_dump(0, [])
    file_state.publish(
        10, "update", "INSERT DATA { <http://example.org/a> <http://example.org/p> 1 }", fmt="ru"
    )
    gate = Recorded(status=200, gate=threading.Event(), answer=SPARQL_OK)
    with local_server(gate) as endpoint:
        config = make_config(
            file_state,
            update_endpoint=f"{endpoint}/update",
            gsp_endpoint=f"{endpoint}/store",
            query_endpoint=f"{endpoint}/query",
        )
        base = serve(config)

        started = requests.post(base + "/update", timeout=10)
        busy = requests.post(base + "/update", timeout=10)
        busy_rebuild = requests.post(base + "/rebuild?wait=1", timeout=10)
        running = requests.get(base + "/status", timeout=10).json()["running"]
        gate.gate.set()
        deadline = time.monotonic() + 30
        while requests.get(base + "/status", timeout=10).json()["running"] and time.monotonic() < deadline:
            time.sleep(0.05)
        final = requests.get(base + "/status", timeout=10).json()

    assert started.status_code == 202 and started.json() == {"started": True}
    assert busy.status_code == 409 and busy.json()["error"] == "busy" and busy.json()["detail"]
    assert busy_rebuild.status_code == 409
    assert running is True
    assert final["lastSucceeded"] is True and final["applied"] == 2


def test_a_run_held_by_another_process_makes_serve_answer_409(file_state, make_config, serve):
    config = make_config(file_state)
    base = serve(config)
    lock = RunLock(config.lock_path)
    lock.acquire(0)
    try:
        r = requests.post(base + "/update?wait=5", timeout=10)
    finally:
        lock.release()
    assert r.status_code == 409 and r.json()["error"] == "busy"


def test_wait_that_runs_out_answers_202(file_state, make_config, serve):
    file_state.publish_dump(0, [])
    gate = Recorded(status=200, gate=threading.Event(), answer=SPARQL_OK)
    with local_server(gate) as endpoint:
        config = make_config(
            file_state, update_endpoint=f"{endpoint}/update", gsp_endpoint=f"{endpoint}/store"
        )
        base = serve(config)
        r = requests.post(base + "/update?wait=0.3", timeout=10)
        gate.gate.set()
        assert r.status_code == 202 and r.json() == {"started": True}
        deadline = time.monotonic() + 30
        while requests.get(base + "/status", timeout=10).json()["running"] and time.monotonic() < deadline:
            time.sleep(0.05)


def test_unknown_paths_methods_and_bad_wait_get_json_errors(file_state, make_config, serve):
    base = serve(make_config(file_state))

    missing = requests.get(base + "/nope", timeout=10)
    wrong_method = requests.get(base + "/update", timeout=10)
    bad_wait = requests.post(base + "/update?wait=soon", timeout=10)

    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert wrong_method.status_code == 405 and wrong_method.json()["error"] == "method_not_allowed"
    assert bad_wait.status_code == 400 and "wait" in bad_wait.json()["detail"]
    for r in (missing, wrong_method, bad_wait):
        assert "Traceback" not in r.text


def test_bind_addresses_parse():
    assert parse_bind("127.0.0.1:8586") == ("127.0.0.1", 8586)
    assert parse_bind("[::1]:9000") == ("::1", 9000)
    with pytest.raises(ValueError):
        parse_bind("localhost")


def test_a_malformed_request_gets_a_json_error(file_state, make_config, serve):
    import socket
    from urllib.parse import urlsplit

    base = serve(make_config(file_state))
    url = urlsplit(base)
    with socket.create_connection((url.hostname, url.port), timeout=10) as conn:
        conn.sendall(b"GET /status HTTP/1.1\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n")
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk

    head, _, body = answer.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.0 431")
    assert "Content-Type: application/json" in head
    assert "Traceback" not in body
    assert json.loads(body)["error"] == "request_header_fields_too_large"
