"""A 2xx answer is not proof: stores that acknowledge and keep nothing, or answer with an HTML page."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from dmsupdate.agent.runner import Runner
from tests.agent.conftest import quad, ttl

G = "http://example.org/graph/g"


@contextmanager
def silent_store(gsp_answer: tuple[int, str, bytes] = (204, "", b"")) -> Iterator[dict[str, Any]]:
    """A store that answers every write 2xx and keeps nothing: every graph is empty, every ASK false."""
    seen: dict[str, Any] = {"writes": [], "lengths": []}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self, status: int, media: str, body: bytes) -> None:
            self.send_response(status)
            if media:
                self.send_header("Content-Type", media)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _handle(self) -> None:
            length = self.headers.get("Content-Length")
            body = self.rfile.read(int(length)) if length else b""
            if self.path.startswith("/query"):
                query = parse_qs(body.decode()).get("query", [""])[0]
                if query.startswith("ASK"):
                    answer: dict[str, Any] = {"head": {}, "boolean": False}
                elif "?g" in query:
                    answer = {"head": {"vars": ["g", "n"]}, "results": {"bindings": []}}
                else:
                    zero = {"n": {"type": "literal", "value": "0"}}
                    answer = {"head": {"vars": ["n"]}, "results": {"bindings": [zero]}}
                self._answer(200, "application/sparql-results+json", json.dumps(answer).encode())
                return
            seen["writes"].append((self.command, self.path))
            seen["lengths"].append(length)
            if self.path.startswith("/store") and self.command in ("PUT", "POST"):
                self._answer(*gsp_answer)
            else:
                self._answer(204, "", b"")

        do_GET = do_POST = do_PUT = do_DELETE = _handle  # noqa: N815

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    seen["base"] = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield seen
    finally:
        server.shutdown()
        server.server_close()


def config_for(make_config, state, base: str, **extra):
    return make_config(state, update_endpoint=f"{base}/update", gsp_endpoint=f"{base}/store", **extra)


def test_an_add_that_the_store_acknowledges_and_drops_fails_the_run_at_that_key(file_state, make_config):
    file_state.publish_dump(0, [])
    add = file_state.publish(10, "add", ttl("ex:a ex:p ex:b .", "ex:a ex:p ex:c ."), arg=G, fmt="ttl")
    file_state.publish(20, "add", ttl("ex:later ex:p ex:b ."), arg=G, fmt="ttl")
    with silent_store() as store:
        status = Runner(config_for(make_config, file_state, store["base"])).update()

    assert status["lastSucceeded"] is False and status["failedKey"] == add
    assert "2 of 2 sampled triples of the file are not in graph" in status["error"], status["error"]
    assert status["applied"] == 1  # the dump (nothing to load) passed; nothing after the failed add ran
    posts = [w for w in store["writes"] if w[0] == "POST" and "graph=" in w[1]]
    assert len(posts) == 1


def test_a_replace_that_the_store_drops_says_what_was_expected_and_found(file_state, make_config):
    file_state.publish_dump(0, [])
    replace = file_state.publish(10, "replace", "_:x <http://example.org/p> _:y .\n", arg=G, fmt="nt.gz")
    with silent_store() as store:
        status = Runner(config_for(make_config, file_state, store["base"])).update()

    assert status["failedKey"] == replace
    assert f"graph <{G}> holds 0 triples after the replace; expected 1" in status["error"]
    assert all(length is not None for length in store["lengths"])  # every body had a Content-Length


def test_blank_node_triples_that_vanish_are_caught_on_add(file_state, make_config):
    file_state.publish_dump(0, [])
    add = file_state.publish(10, "add", ttl("[] ex:p [ ex:q 1 ] ."), arg=G, fmt="ttl")
    with silent_store() as store:
        status = Runner(config_for(make_config, file_state, store["base"])).update()

    assert status["failedKey"] == add and "grew by 0 triples" in status["error"]
    assert "between 2 and 2" in status["error"]


def test_verify_off_trusts_the_answer(file_state, make_config):
    file_state.publish_dump(0, [])
    file_state.publish(10, "add", ttl("ex:a ex:p ex:b ."), arg=G, fmt="ttl")
    with silent_store() as store:
        status = Runner(config_for(make_config, file_state, store["base"], verify="off")).update()

    assert status["lastSucceeded"] is True and status["applied"] == 2


def test_an_html_page_to_a_graph_store_write_is_a_failure_even_unverified(file_state, make_config):
    file_state.publish_dump(0, [])
    add = file_state.publish(10, "add", ttl("ex:a ex:p ex:b ."), arg=G, fmt="ttl")
    form = b"<html><body><form method='post'>Upload RDF</form></body></html>"
    with silent_store(gsp_answer=(200, "text/html; charset=UTF-8", form)) as store:
        status = Runner(config_for(make_config, file_state, store["base"], verify="off")).update()

    assert status["failedKey"] == add
    assert "answered HTTP 200 with an HTML page, not a Graph Store Protocol result" in status["error"]


def test_a_drop_the_store_ignores_is_caught(file_state, make_config, oxigraph_server):
    file_state.publish_dump(0, [quad("s", "p", "o", G)])
    endpoints = {"query_endpoint": f"{oxigraph_server}/query", "update_endpoint": f"{oxigraph_server}/update"}
    assert Runner(make_config(file_state, gsp_endpoint=f"{oxigraph_server}/store", **endpoints)).update()[
        "lastSucceeded"
    ]
    drop = file_state.publish(10, "drop", arg=G)
    # A Graph Store URL that answers every DELETE 404 ("no such graph", which a drop accepts) and drops nothing.
    misrouted = make_config(file_state, gsp_endpoint=f"{oxigraph_server}/nowhere", **endpoints)

    status = Runner(misrouted).update()

    assert status["failedKey"] == drop
    assert f"graph <{G}> still holds 1 triples after the drop; expected 0" in status["error"]
