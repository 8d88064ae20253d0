"""Fingerprints computed by the agent (DESIGN §5, §5b): kept for the embedded store, asked of an endpoint."""

from __future__ import annotations

import gc
import json
from datetime import date

import pyoxigraph as ox
import pytest

from dmsupdate.agent import fingerprint_scan, kept_fingerprint
from dmsupdate.agent.cli import main
from dmsupdate.agent.kept_fingerprint import KeptFingerprint
from dmsupdate.agent.runner import Runner
from dmsupdate.agent.update_scope import touched_graphs
from operations.sample import Readings, StateWriter, make_stations, write_day, write_dump
from tests.agent.conftest import quad, ttl
from tests.agent.test_replay_sparql import endpoint_config

G1 = "http://example.org/graph/one"
G2 = "http://example.org/graph/two"


def same_data(a: dict, b: dict) -> bool:
    return a["graphs"] == b["graphs"] and a["total"] == b["total"]


def publish_history(state, tmp_path) -> None:
    state.publish_image(0, [quad("s0", "p", "o0", G1), quad("s0", "p", "o0")], tmp_path)
    state.publish(10, "add", ttl("ex:s1 ex:p ex:o1 .", 'ex:s1 ex:q "Lang"@EN-GB .'), arg=G1, fmt="ttl")
    state.publish(20, "replace", ttl("ex:s2 ex:p ex:o2 .", "ex:s2 ex:p [ ex:q ex:o3 ] ."), arg=G2, fmt="ttl")
    state.publish(
        30,
        "update",
        f'PREFIX ex: <http://example.org/>\nINSERT DATA {{ GRAPH <{G1}> {{ ex:s3 ex:p "x\\ty" }} }}',
        fmt="ru",
    )
    state.publish(
        40, "update", "DELETE { ?s ?p ?o } WHERE { ?s ?p ?o FILTER(?o = <http://example.org/o0>) }", fmt="ru"
    )


def test_the_kept_fingerprint_equals_a_full_scan_after_every_kind_of_operation(
    file_state, make_config, tmp_path
):
    publish_history(file_state, tmp_path)
    config = make_config(file_state, fingerprint="full")
    status = Runner(config).update()
    assert status["lastSucceeded"] is True
    kept = status["fingerprint"]
    assert kept["mode"] == "full" and kept["effectiveDate"] == status["effectiveDate"]
    scanned = Runner(config).verify()["fingerprint"]
    assert same_data(kept, scanned)
    assert {g: e["triples"] for g, e in scanned["graphs"].items()} == {
        G1: 4,
        G2: 3,
    }  # the default graph was emptied

    file_state.publish(50, "drop", arg=G2)
    file_state.publish(60, "add", ttl("ex:s4 ex:p ex:o4 ."), arg=G1, fmt="ttl")
    kept = Runner(config).update()["fingerprint"]
    assert same_data(kept, Runner(config).verify()["fingerprint"])
    assert list(kept["graphs"]) == [G1] and kept["total"]["triples"] == 5


def watch_reads(monkeypatch) -> list[str]:
    """What the kept fingerprint reads from the store from now on: counts and scans, by graph."""
    reads: list[str] = []
    real = {
        name: getattr(fingerprint_scan, name)
        for name in ("scan_graph", "scan_store", "count_graph", "count_store")
    }
    monkeypatch.setattr(
        kept_fingerprint, "scan_graph", lambda s, g: reads.append(f"scan {g}") or real["scan_graph"](s, g)
    )
    monkeypatch.setattr(
        kept_fingerprint, "scan_store", lambda s: reads.append("scan store") or real["scan_store"](s)
    )
    monkeypatch.setattr(
        kept_fingerprint, "count_graph", lambda s, g: reads.append(f"count {g}") or real["count_graph"](s, g)
    )
    monkeypatch.setattr(
        kept_fingerprint, "count_store", lambda s: reads.append("count store") or real["count_store"](s)
    )
    return reads


def test_counts_after_a_run_count_only_the_graphs_it_changed(file_state, make_config, tmp_path, monkeypatch):
    publish_history(file_state, tmp_path)
    config = make_config(file_state)
    first = Runner(config).update()["fingerprint"]
    assert first["mode"] == "counts" and first["total"]["hash"] is None
    reads = watch_reads(monkeypatch)

    assert same_data(Runner(config).update()["fingerprint"], first)
    assert reads == []  # nothing applied, nothing read
    file_state.publish(50, "add", ttl("ex:s5 ex:p ex:o5 ."), arg=G2, fmt="ttl")
    after = Runner(config).update()["fingerprint"]
    assert reads == [f"count <{G2}>"]  # a count, not a scan of the graph's triples
    assert after["graphs"][G2]["triples"] == first["graphs"][G2]["triples"] + 1


def test_a_full_fingerprint_after_counted_runs_scans_only_the_graphs_whose_hash_is_unknown(
    file_state, make_config, tmp_path, monkeypatch
):
    publish_history(file_state, tmp_path)
    Runner(make_config(file_state, fingerprint="full")).update()  # every hash known
    file_state.publish(50, "add", ttl("ex:s5 ex:p ex:o5 ."), arg=G2, fmt="ttl")
    counted = Runner(make_config(file_state)).update()["fingerprint"]  # G2 counted: its hash unknown
    assert counted["mode"] == "counts" and counted["graphs"][G2]["hash"] is None
    reads = watch_reads(monkeypatch)
    config = make_config(file_state, fingerprint="full")
    full = Runner(config).update()["fingerprint"]
    assert reads == [f"scan <{G2}>"]
    assert full["mode"] == "full" and same_data(full, Runner(config).verify()["fingerprint"])


def test_a_hand_edit_of_the_embedded_store_is_seen_by_the_next_run(file_state, make_config, tmp_path):
    publish_history(file_state, tmp_path)
    config = make_config(file_state)
    before = Runner(config).update()["fingerprint"]
    store = ox.Store(str(config.db_dir))
    store.remove(quad("s1", "p", "o1", G1))
    del store
    gc.collect()

    after = Runner(config).update()["fingerprint"]
    assert after["graphs"][G1]["triples"] == before["graphs"][G1]["triples"] - 1


def test_a_run_that_dies_leaves_no_kept_fingerprint_so_the_next_one_rescans(
    file_state, make_config, tmp_path
):
    publish_history(file_state, tmp_path)
    config = make_config(file_state)
    Runner(config).update()
    assert config.fingerprint_path.exists()
    kept = KeptFingerprint(config.fingerprint_path, config.db_dir)
    kept.take()  # what a run does first; a kill -9 here never writes it back
    assert kept.graphs is not None and not config.fingerprint_path.exists()
    again = KeptFingerprint(config.fingerprint_path, config.db_dir)
    again.take()
    assert again.graphs is None


def test_verify_prints_the_full_fingerprint_and_exits_0(file_state, make_config, tmp_path, capsys):
    publish_history(file_state, tmp_path)
    config = make_config(file_state)
    Runner(config).update()
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "s3root": file_state.root,
                "dblocation": config.dblocation,
                "dbname": config.dbname,
                "logArea": config.log_area,
            }
        )
    )
    assert main(["--config", str(path), "verify", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["mode"] == "full" and len(printed["total"]["hash"]) == 64
    assert json.loads(config.status_path.read_text())["fingerprint"] == printed


def test_verify_without_a_database_fails_with_a_message(file_state, make_config, tmp_path, capsys):
    config = make_config(file_state)
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "s3root": file_state.root,
                "dblocation": config.dblocation,
                "dbname": config.dbname,
                "logArea": config.log_area,
            }
        )
    )
    assert main(["--config", str(path), "verify"]) == 1
    assert "no database" in capsys.readouterr().err


def test_fingerprint_off_reports_none(file_state, make_config, tmp_path):
    publish_history(file_state, tmp_path)
    status = Runner(make_config(file_state, fingerprint="off")).update()
    assert status["fingerprint"] is None


def write_demo_state(root: str) -> None:
    import random

    rng = random.Random(7)
    stations = make_stations(rng, 6)
    readings = Readings(rng, stations)
    writer = StateWriter(root)
    first = date(2026, 11, 1)
    write_dump(writer, stations, readings, first)
    for n in range(2):
        write_day(writer, stations, readings, date(2026, 11, 1 + n), n)


def test_embedded_store_and_oxigraph_server_agree_on_the_demo_data(
    file_state, make_config, oxigraph_server, tmp_path
):
    write_demo_state(file_state.root)
    embedded = make_config(file_state, fingerprint="full")
    remote = endpoint_config(
        make_config, file_state, oxigraph_server, fingerprint="full", logArea=str(tmp_path / "log-remote")
    )
    a = Runner(embedded).update()
    b = Runner(remote).update()
    assert a["lastSucceeded"] and b["lastSucceeded"]
    assert a["fingerprint"]["total"]["triples"] > 100
    assert same_data(a["fingerprint"], b["fingerprint"])


def test_the_endpoint_counts_show_a_triple_deleted_by_hand(
    file_state, make_config, oxigraph_server, tmp_path
):
    import requests

    publish_history(file_state, tmp_path)
    file_state.publish_dump(1, [quad("s0", "p", "o9", G1)])
    config = endpoint_config(make_config, file_state, oxigraph_server)
    before = Runner(config).update()["fingerprint"]
    requests.post(
        f"{oxigraph_server}/update",
        data=f"DELETE DATA {{ GRAPH <{G1}> {{ <http://example.org/s1> <http://example.org/p> <http://example.org/o1> }} }}",
        headers={"Content-Type": "application/sparql-update"},
        timeout=10,
    ).raise_for_status()
    after = Runner(config).update()["fingerprint"]
    assert after["graphs"][G1]["triples"] == before["graphs"][G1]["triples"] - 1


@pytest.mark.parametrize(
    ("text", "graphs"),
    [
        (f'INSERT DATA {{ GRAPH <{G1}> {{ <a:s> <a:p> "}}" }} }}', {G1}),
        (
            "PREFIX g: <http://example.org/graph/> DELETE DATA { GRAPH g:one { <a:s> <a:p> 1 } } ; INSERT DATA { <a:s> <a:p> 2 }",
            {G1, ""},
        ),
        (
            f"WITH <{G2}> DELETE {{ ?s <a:p> ?o }} WHERE {{ GRAPH <{G1}> {{ ?s <a:p> ?o }} FILTER(?o < 3) }}",
            {G2},
        ),
        (f"DROP SILENT GRAPH <{G1}> ; CLEAR DEFAULT", {G1, ""}),
        (f"MOVE <{G1}> TO GRAPH <{G2}>", {G1, G2}),
        (
            "PREFIX ex: <http://example.org/> INSERT { ex:s ex:p ex:o\\' } WHERE {} ; DROP GRAPH <a:g>",
            {"", "a:g"},
        ),
        (
            f'INSERT DATA {{ GRAPH <{G1}> {{ <a:s> <a:p> """{{ }} }}""", "#", <a:o#x> }} }} # }} {{\r; CLEAR DEFAULT',
            {G1, ""},
        ),
        ("DROP ALL", None),
        ("DELETE WHERE { GRAPH ?g { ?s ?p ?o } }", None),
        ("BASE <http://example.org/> INSERT DATA { GRAPH <one> { <a:s> <a:p> 1 } }", None),
    ],
)
def test_the_graphs_a_sparql_update_may_change(text, graphs):
    assert touched_graphs(text) == graphs
