"""Hostile objects that reach the bucket without the control plane: the agent refuses them, on both backends.

Each key fails with a clear error naming it, nothing outside the database
folder is touched, no URL is fetched, no half-unpacked image stays behind.
"""

from __future__ import annotations

import http.server
import io
import json
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dmsupdate.agent import images
from dmsupdate.agent.runner import Runner
from tests.agent.conftest import agent_env, quad, store_quads, ttl
from tests.agent.test_replay_sparql import endpoint_config, server_quads
from tests.reliability.test_hostile_publications import LATE_DOCTYPE, LAUGHS

G = "http://example.org/graph/g"


class Listener:
    """A local HTTP server that records every request (what LOAD or SERVICE would reach)."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        hits = self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                hits.append(f"{self.command} {self.path}")
                body = b'<http://leak/s> <http://leak/p> "internal secret" .\n'
                self.send_response(200)
                self.send_header("Content-Type", "application/n-triples")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def siblings(config) -> list[str]:
    """What lies beside the database folder (an `.incoming` left over would show here)."""
    return sorted(p.name for p in config.db_dir.parent.iterdir()) if config.db_dir.parent.exists() else []


# Images -----------------------------------------------------------------


def tgz(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes | None = b"x", link: str = ""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info, (data if kind == tarfile.REGTYPE else None)


STORE = [member("store", tarfile.DIRTYPE), member("store/CURRENT", data=b"MANIFEST-000001\n")]
IMAGES = {
    "a symbolic link inside the store": [*STORE, member("store/LOCK", tarfile.SYMTYPE, link="CURRENT")],
    "a hard link to a member": [*STORE, member("store/OPTIONS", tarfile.LNKTYPE, link="store/CURRENT")],
    "a link out, then a file through it": [
        *STORE,
        member("store/out", tarfile.SYMTYPE, link="../../../outside"),
        member("store/out/planted", data=b"planted"),
    ],
    "a FIFO": [*STORE, member("store/pipe", tarfile.FIFOTYPE)],
    "a name with ..": [*STORE, member("store/../../outside/planted", data=b"planted")],
    "an absolute name": [*STORE, member("/tmp/dmsupdate-planted", data=b"planted")],
}


@pytest.mark.parametrize("case", IMAGES, ids=list(IMAGES))
def test_images_with_anything_but_files_and_folders_are_refused(case, file_state, make_config, tmp_path):
    key = file_state.publish(0, "image", tgz(IMAGES[case]), fmt="tgz")
    config = make_config(file_state)
    status = Runner(config).update()
    assert status["lastSucceeded"] is False and status["failedKey"] == key
    assert "refused" in status["error"] or "only files and folders" in status["error"], status["error"]
    assert not (tmp_path / "outside").exists() and not Path("/tmp/dmsupdate-planted").exists()
    assert siblings(config) == []  # no database, no .DS-DB.incoming


def test_an_image_that_unpacks_far_beyond_its_size_is_refused(file_state, make_config, monkeypatch):
    monkeypatch.setattr(images, "IMAGE_MIN_UNPACKED", 1 << 20)  # the floor, lowered to keep the test small
    bomb = tgz([*STORE, member("store/000001.sst", data=bytes(64 << 20))])
    assert len(bomb) < 100_000  # 64 MiB of zeros in under 100 kB
    key = file_state.publish(0, "image", bomb, fmt="tgz")
    config = make_config(file_state)
    status = Runner(config).update()
    assert status["failedKey"] == key and "unpacks to more than" in status["error"]
    assert siblings(config) == []


def test_an_image_with_too_many_members_is_refused(file_state, make_config, monkeypatch):
    monkeypatch.setattr(images, "IMAGE_MAX_MEMBERS", 50)
    many = tgz([*STORE, *(member(f"store/{n:06d}.sst") for n in range(60))])
    key = file_state.publish(0, "image", many, fmt="tgz")
    config = make_config(file_state)
    status = Runner(config).update()
    assert status["failedKey"] == key and "more than 50 members" in status["error"]
    assert siblings(config) == []


def test_a_truncated_image_leaves_nothing_beside_the_database(file_state, make_config, tmp_path):
    file_state.publish_image(0, [quad("s", "p", "o", G)], tmp_path)
    config = make_config(file_state)
    assert Runner(config).update()["lastSucceeded"] is True
    good = tgz([*STORE, member("store/000001.sst", data=b"y" * 300_000)])
    key = file_state.publish(10, "image", good[: len(good) // 2], fmt="tgz")
    status = Runner(config).rebuild()
    assert status["failedKey"] == key
    assert siblings(config) == ["DS-DB"]  # the old database, and nothing else
    assert store_quads(config.db_dir) == {
        f"<http://example.org/s> <http://example.org/p> <http://example.org/o> <{G}>"
    }


# SPARQL updates and RDF/XML ------------------------------------------------


def fetching_updates(url: str) -> dict[str, str]:
    return {
        "LOAD": f"LOAD <{url}/meta-data> INTO GRAPH <{G}>",
        "SERVICE": f"INSERT {{ GRAPH <{G}> {{ ?s ?p ?o }} }} WHERE {{ SERVICE <{url}/sparql> {{ ?s ?p ?o }} }}",
    }


@pytest.mark.parametrize("word", ["LOAD", "SERVICE"])
def test_embedded_agent_never_fetches_a_url_an_update_names(word, file_state, make_config, listener):
    file_state.publish_dump(0, [quad("s", "p", "o", G)])
    key = file_state.publish(10, "update", fetching_updates(listener.url)[word], fmt="ru")
    config = make_config(file_state)
    status = Runner(config).update()
    assert status["failedKey"] == key and word in status["error"]
    assert listener.hits == []
    assert not any("leak" in q for q in store_quads(config.db_dir))


@pytest.mark.parametrize("word", ["LOAD", "SERVICE"])
def test_sparql_agent_never_sends_an_update_that_fetches_urls(
    word, file_state, make_config, oxigraph_server, listener
):
    file_state.publish_dump(0, [quad("s", "p", "o", G)])
    key = file_state.publish(10, "update", fetching_updates(listener.url)[word], fmt="ru")
    status = Runner(endpoint_config(make_config, file_state, oxigraph_server)).update()
    assert status["failedKey"] == key and word in status["error"]
    assert listener.hits == []
    assert not any("leak" in q for q in server_quads(oxigraph_server))


@pytest.mark.parametrize("body", [LAUGHS, LATE_DOCTYPE], ids=["billion laughs", "doctype after the root"])
@pytest.mark.parametrize("backend", ["embedded", "sparql"])
def test_agent_refuses_rdfxml_with_entity_declarations(body, backend, file_state, make_config, request):
    file_state.publish_dump(0, [quad("s", "p", "o", G)])
    key = file_state.publish(10, "add", body, arg=G, fmt="rdf")
    if backend == "embedded":
        config = make_config(file_state)
    else:
        base = request.getfixturevalue("oxigraph_server")
        config = endpoint_config(make_config, file_state, base)
    status = Runner(config).update()
    assert status["failedKey"] == key and "DOCTYPE" in status["error"]
    quads = store_quads(config.db_dir) if backend == "embedded" else server_quads(base)
    assert not any("haha" in q or "zz" in q for q in quads)


def test_an_update_nested_past_the_engine_stack_fails_its_key_and_the_agent_lives(file_state, tmp_path):
    """Before the check, this update killed the agent process (SIGSEGV) on every run."""
    file_state.publish_dump(0, [quad("s", "p", "o", G)])
    key = file_state.publish(
        10,
        "update",
        "INSERT DATA { <http://a> <http://b> 1 } ; DELETE WHERE { " + "{" * 10000 + "}" * 10000 + " }",
        fmt="ru",
    )
    config = {
        "s3root": file_state.root,
        "dblocation": str(tmp_path / "db"),
        "dbname": "DS-DB",
        "logArea": str(tmp_path / "log"),
        "bindir": str(tmp_path / "bin"),
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    done = subprocess.run(
        [sys.executable, "-m", "dmsupdate.agent", "--config", str(tmp_path / "config.json"), "update"],
        capture_output=True,
        text=True,
        env=agent_env(),
        timeout=300,
    )
    assert done.returncode == 1, (done.returncode, done.stderr[-500:])
    status = json.loads((tmp_path / "log" / "status.json").read_text())
    assert status["failedKey"] == key and "64" in status["error"]


@pytest.mark.parametrize("backend", ["embedded", "sparql"])
def test_dropping_a_graph_that_never_existed_is_not_a_failure_on_either_backend(
    backend, file_state, make_config, request
):
    file_state.publish_dump(0, [quad("s", "p", "o", G)])
    file_state.publish(10, "drop", arg="http://example.org/graph/never-existed")
    file_state.publish(20, "add", ttl("ex:after ex:p ex:o ."), arg=G, fmt="ttl")
    if backend == "embedded":
        config = make_config(file_state)
    else:
        base = request.getfixturevalue("oxigraph_server")
        config = endpoint_config(make_config, file_state, base)
    status = Runner(config).update()
    assert status["lastSucceeded"] is True and status["applied"] == 3, status["error"]  # dump, drop, add
