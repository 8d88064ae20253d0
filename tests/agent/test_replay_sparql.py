"""The full replay cycle against a real `oxigraph serve` over HTTP (Graph Store Protocol + SPARQL Update)."""

from __future__ import annotations

import io
import json
import os
import stat
import sys
from pathlib import Path

import pyoxigraph as ox
import requests

from dmsupdate.agent.runner import Runner
from tests.agent.conftest import quad, ttl

G1 = "http://example.org/graph/one"
G2 = "http://example.org/graph/two"
DOTTED = "http://environment.data.gov.uk/flood-monitoring/graph/readings-2015-11-20"


def endpoint_config(make_config, state, base: str, **extra):
    return make_config(
        state,
        query_endpoint=f"{base}/query",
        update_endpoint=f"{base}/update",
        gsp_endpoint=f"{base}/store",
        **extra,
    )


def server_quads(base: str) -> set[str]:
    """Every quad the server holds, as N-Quads lines without the final dot."""
    r = requests.get(f"{base}/store", headers={"Accept": "application/n-quads"}, timeout=10)
    r.raise_for_status()
    return {
        f"{q.subject} {q.predicate} {q.object} {q.graph_name}"
        for q in ox.parse(r.content, ox.RdfFormat.N_QUADS)
    }


def in_graph(lines: set[str], graph: str) -> set[str]:
    suffix = f" <{graph}>"
    return {line[: -len(suffix)] for line in lines if line.endswith(suffix)}


def test_dump_bootstrap_is_posted_and_every_operation_applies(state, make_config, oxigraph_server):
    dump = state.publish_dump(
        0, [quad("base", "p", "o", G1), quad("keep", "p", "o", G2), quad("d", "p", "o", DOTTED)]
    )
    state.publish(10, "add", ttl("ex:a ex:p ex:b ."), arg=G1, fmt="ttl")
    state.publish(20, "add", ttl("ex:gz ex:p ex:b ."), arg=G1, fmt="ttl.gz")
    state.publish(
        30,
        "replace",
        "<http://example.org/r> <http://example.org/p> <http://example.org/s> .\n",
        arg=G2,
        fmt="nt.gz",
    )
    state.publish(40, "drop", arg=DOTTED)
    state.publish(
        50,
        "update",
        f"INSERT DATA {{ GRAPH <{G1}> {{ <http://example.org/u> <http://example.org/p> 1 }} }}",
        fmt="ru",
    )
    state.publish(
        60,
        "postproc",
        f"INSERT DATA {{ GRAPH <{G1}> {{ <http://example.org/pp> <http://example.org/p> 2 }} }}",
        arg="stats",
        fmt="ru.gz",
    )
    config = endpoint_config(make_config, state, oxigraph_server)

    status = Runner(config).update()

    assert status["lastSucceeded"] is True, status
    assert status["image"] == dump and status["applied"] == 7
    lines = server_quads(oxigraph_server)
    assert in_graph(lines, G1) == {
        "<http://example.org/base> <http://example.org/p> <http://example.org/o>",
        "<http://example.org/a> <http://example.org/p> <http://example.org/b>",
        "<http://example.org/gz> <http://example.org/p> <http://example.org/b>",
        '<http://example.org/u> <http://example.org/p> "1"^^<http://www.w3.org/2001/XMLSchema#integer>',
        '<http://example.org/pp> <http://example.org/p> "2"^^<http://www.w3.org/2001/XMLSchema#integer>',
    }
    assert in_graph(lines, G2) == {"<http://example.org/r> <http://example.org/p> <http://example.org/s>"}
    assert in_graph(lines, DOTTED) == set()
    assert Runner(config).update()["applied"] == 0


def test_image_is_installed_by_the_hook_with_the_original_arguments(
    file_state, make_config, oxigraph_server, tmp_path
):
    image = file_state.publish_image(0, [], tmp_path)
    file_state.publish(10, "add", ttl("ex:after ex:p ex:o ."), arg=G1, fmt="ttl")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    record = tmp_path / "hook.json"
    hook = bindir / "install_image"
    hook.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys, urllib.request\n"
        f"json.dump({{'args': sys.argv[1:], 'cwd': os.getcwd()}}, open({str(record)!r}, 'w'))\n"
        f"req = urllib.request.Request({oxigraph_server + '/store?graph=' + G2!r}, method='PUT',\n"
        "    data=b'<http://example.org/from-image> <http://example.org/p> <http://example.org/o> .',\n"
        "    headers={'Content-Type': 'application/n-triples'})\n"
        "urllib.request.urlopen(req)\n"
    )
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)
    config = endpoint_config(make_config, file_state, oxigraph_server, bindir=str(bindir))

    status = Runner(config).update()

    assert status["lastSucceeded"] is True, status
    seen = json.loads(record.read_text())
    assert seen["args"] == [file_state.store.url(image), "DS-DB"]
    assert Path(seen["cwd"]) == Path(config.dblocation)
    lines = server_quads(oxigraph_server)
    assert in_graph(lines, G2) == {
        "<http://example.org/from-image> <http://example.org/p> <http://example.org/o>"
    }
    assert in_graph(lines, G1) == {"<http://example.org/after> <http://example.org/p> <http://example.org/o>"}


def test_an_image_without_hook_fails_clearly(file_state, make_config, oxigraph_server, tmp_path):
    image = file_state.publish_image(0, [], tmp_path)
    config = endpoint_config(make_config, file_state, oxigraph_server)

    status = Runner(config).update()

    assert status["lastSucceeded"] is False and status["failedKey"] == image
    assert "install_image hook" in status["error"]


def test_endpoint_down_stops_the_run_and_the_next_run_retries(
    file_state, make_config, oxigraph_server, tmp_path
):
    from tests.conftest import free_port

    file_state.publish_dump(0, [])
    config = endpoint_config(make_config, file_state, oxigraph_server)
    assert Runner(config).update()["lastSucceeded"] is True
    first = file_state.publish(10, "add", ttl("ex:one ex:p ex:o ."), arg=G1, fmt="ttl")
    file_state.publish(20, "add", ttl("ex:two ex:p ex:o ."), arg=G1, fmt="ttl")
    down = endpoint_config(make_config, file_state, f"http://127.0.0.1:{free_port()}")

    failed = Runner(down).update()
    retried = Runner(config).update()

    assert failed["lastSucceeded"] is False and failed["failedKey"] == first
    assert "cannot reach" in failed["error"]
    assert retried["lastSucceeded"] is True and retried["applied"] == 2
    assert len(in_graph(server_quads(oxigraph_server), G1)) == 2


def test_a_refused_update_names_the_key_and_the_endpoint_answer(file_state, make_config, oxigraph_server):
    file_state.publish_dump(0, [])
    bad = file_state.publish(10, "update", "INSERT DATA { broken", fmt="ru")
    config = endpoint_config(make_config, file_state, oxigraph_server)

    status = Runner(config).update()

    assert status["failedKey"] == bad and "HTTP 400" in status["error"]


def test_ledger_survives_between_runs_in_sqlite(file_state, make_config, oxigraph_server):
    file_state.publish_dump(0, [])
    add = file_state.publish(10, "add", ttl("ex:a ex:p ex:o ."), arg=G1, fmt="ttl")
    config = endpoint_config(make_config, file_state, oxigraph_server)
    Runner(config).update()
    os.unlink(config.status_path)  # status.json is derived; the ledger is the record

    status = Runner(config).update()

    assert status["applied"] == 0 and status["recent"] == [add]


def test_dump_hook_gets_the_dump_the_database_name_and_the_opt_file(
    file_state, make_config, oxigraph_server, tmp_path
):
    dump = file_state.publish_dump(0, [quad("ignored", "p", "o")])
    opt_data = b"stats"
    file_state.store.put_new("images/stats.opt", io.BytesIO(opt_data), len(opt_data))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    record = tmp_path / "hook.json"
    hook = bindir / "install_dump"
    hook.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"json.dump({{'args': sys.argv[1:], 'cwd': os.getcwd()}}, open({str(record)!r}, 'w'))\n"
    )
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)
    config = endpoint_config(make_config, file_state, oxigraph_server, bindir=str(bindir), verify="off")

    status = Runner(config).update()

    assert status["lastSucceeded"] is True and status["image"] == dump
    seen = json.loads(record.read_text())
    assert seen["args"] == [file_state.store.url(dump), "DS-DB", file_state.store.url("images/stats.opt")]
    assert server_quads(oxigraph_server) == set()  # the hook, not the agent, loaded the data
    # With verify: counts (the default) a hook that exits 0 having loaded nothing fails the bootstrap.
    checked = endpoint_config(make_config, file_state, oxigraph_server, bindir=str(bindir))
    failed = Runner(checked).rebuild()
    assert failed["lastSucceeded"] is False and failed["failedKey"] == dump
    assert "verify" in failed["error"] and "holds 0 triples, the dump 1" in failed["error"]


def test_a_failing_hook_fails_the_bootstrap_and_the_next_run_tries_again(
    file_state, make_config, oxigraph_server, tmp_path
):
    dump = file_state.publish_dump(0, [])
    bindir = tmp_path / "bin"
    bindir.mkdir()
    hook = bindir / "install_dump"
    hook.write_text("#!/bin/sh\necho 'tdbloader: out of disk' >&2\nexit 3\n")
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)
    config = endpoint_config(make_config, file_state, oxigraph_server, bindir=str(bindir))

    first = Runner(config).update()
    second = Runner(config).plan()

    assert (
        first["failedKey"] == dump and "exited with 3" in first["error"] and "out of disk" in first["error"]
    )
    assert [e.key for e in second] == [dump]
