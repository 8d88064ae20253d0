"""The full replay cycle into the embedded store, on file:// and on the moto server."""

from __future__ import annotations

import json

from dmsupdate.agent.runner import Runner
from tests.agent.conftest import graph_triples, quad, store_quads, ttl

G1 = "http://example.org/graph/one"
G2 = "http://example.org/graph/two"
DOTTED = "http://environment.data.gov.uk/flood-monitoring/graph/readings-2015-11-20"


def test_image_bootstrap_then_every_operation_applies_in_order(state, make_config, tmp_path):
    image = state.publish_image(
        0, [quad("base", "p", "o", G1), quad("keep", "p", "o", G2), quad("old", "p", "o", DOTTED)], tmp_path
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
    state.publish(40, "add", ttl("ex:d ex:p ex:e ."), arg=DOTTED, fmt="ttl")
    state.publish(50, "drop", arg=DOTTED)
    state.publish(
        60,
        "update",
        f"INSERT DATA {{ GRAPH <{G1}> {{ <http://example.org/u> <http://example.org/p> 1 }} }}",
        fmt="ru",
    )
    state.publish(
        70,
        "postproc",
        f"INSERT DATA {{ GRAPH <{G1}> {{ <http://example.org/pp> <http://example.org/p> 2 }} }}",
        arg="stats",
        fmt="ru.gz",
    )
    config = make_config(state)

    status = Runner(config).update()

    assert status["lastSucceeded"] is True, status
    assert status["applied"] == 7  # the image and six updates: the add to DOTTED is superseded by its drop
    assert status["image"] == image
    assert status["effectiveDate"] == "2016-01-15/04-01-10-000000000"
    assert status["failedKey"] is None and status["error"] is None
    lines = store_quads(config.db_dir)
    assert graph_triples(lines, G1) == {
        "<http://example.org/base> <http://example.org/p> <http://example.org/o>",
        "<http://example.org/a> <http://example.org/p> <http://example.org/b>",
        "<http://example.org/gz> <http://example.org/p> <http://example.org/b>",
        '<http://example.org/u> <http://example.org/p> "1"^^<http://www.w3.org/2001/XMLSchema#integer>',
        '<http://example.org/pp> <http://example.org/p> "2"^^<http://www.w3.org/2001/XMLSchema#integer>',
    }
    assert graph_triples(lines, G2) == {
        "<http://example.org/r> <http://example.org/p> <http://example.org/s>"
    }
    assert graph_triples(lines, DOTTED) == set()
    on_disk = json.loads(config.status_path.read_text())
    assert on_disk["effectiveDate"] == status["effectiveDate"]
    assert on_disk["running"] is False


def test_second_run_applies_only_new_keys(state, make_config, tmp_path):
    state.publish_image(0, [], tmp_path)
    state.publish(
        10, "update", "INSERT { <http://example.org/c> <http://example.org/n> 1 } WHERE {}", fmt="ru"
    )
    config = make_config(state)
    assert Runner(config).update()["applied"] == 2
    state.publish(
        20,
        "update",
        "DELETE { ?s <http://example.org/n> ?n } INSERT { ?s <http://example.org/n> ?m } WHERE { ?s <http://example.org/n> ?n BIND(?n + 10 AS ?m) }",
        fmt="ru",
    )

    status = Runner(config).update()

    assert status["applied"] == 1
    assert Runner(config).update()["applied"] == 0
    assert store_quads(config.db_dir) == {
        '<http://example.org/c> <http://example.org/n> "11"^^<http://www.w3.org/2001/XMLSchema#integer> DEFAULT'
    }


def test_dump_bootstrap_loads_the_newest_dump(state, make_config, tmp_path):
    state.publish_image(0, [quad("old", "p", "o")], tmp_path)
    dump = state.publish_dump(5, [quad("d1", "p", "o", G1), quad("d2", "p", "o")])
    state.publish(10, "add", ttl("ex:a ex:p ex:b ."), arg=G1, fmt="ttl")
    config = make_config(state)

    status = Runner(config).update()

    assert status["lastSucceeded"] and status["image"] == dump
    lines = store_quads(config.db_dir)
    assert "<http://example.org/old> <http://example.org/p> <http://example.org/o> DEFAULT" not in lines
    assert "<http://example.org/d2> <http://example.org/p> <http://example.org/o> DEFAULT" in lines
    assert graph_triples(lines, G1) == {
        "<http://example.org/d1> <http://example.org/p> <http://example.org/o>",
        "<http://example.org/a> <http://example.org/p> <http://example.org/b>",
    }


def test_updates_older_than_the_image_are_not_replayed(state, make_config, tmp_path):
    state.publish(-10, "add", ttl("ex:before ex:p ex:o ."), arg=G1, fmt="ttl")
    state.publish_image(0, [quad("img", "p", "o", G1)], tmp_path)
    config = make_config(state)

    status = Runner(config).update()

    assert status["applied"] == 1
    assert graph_triples(store_quads(config.db_dir), G1) == {
        "<http://example.org/img> <http://example.org/p> <http://example.org/o>"
    }


def test_rebuild_starts_again_from_the_newest_image(state, make_config, tmp_path):
    state.publish_image(0, [quad("one", "p", "o")], tmp_path)
    config = make_config(state)
    Runner(config).update()
    newer = state.publish_image(100, [quad("two", "p", "o")], tmp_path)
    state.publish(110, "add", ttl("ex:three ex:p ex:o ."), arg=G1, fmt="ttl")

    status = Runner(config).rebuild()

    assert status["image"] == newer and status["applied"] == 2
    lines = store_quads(config.db_dir)
    assert "<http://example.org/one> <http://example.org/p> <http://example.org/o> DEFAULT" not in lines
    assert "<http://example.org/two> <http://example.org/p> <http://example.org/o> DEFAULT" in lines


def test_a_rebuilt_scratch_store_packs_into_an_image_and_a_dump_other_agents_install(
    file_state, make_config, tmp_path
):
    """The fleet's clean-base-image flow: rebuild into a scratch directory, then pack_image / write_dump."""
    import io

    from dmsupdate.agent.images import pack_image, write_dump

    file_state.publish_image(0, [quad("base", "p", "o", G1)], tmp_path)
    file_state.publish(10, "add", ttl("ex:a ex:p ex:b ."), arg=G1, fmt="ttl")
    scratch = make_config(
        file_state, dblocation=str(tmp_path / "scratch"), logArea=str(tmp_path / "scratch-log")
    )
    assert Runner(scratch).rebuild()["lastSucceeded"] is True
    image = io.BytesIO()
    pack_image(scratch.db_dir, image)
    dump = io.BytesIO()
    assert write_dump(scratch.db_dir, dump) == 2  # data quads only, the builder's ledger left out
    new_image = file_state.publish(20, "image", image.getvalue(), fmt="tgz")
    file_state.publish(30, "add", ttl("ex:c ex:p ex:d ."), arg=G1, fmt="ttl")

    fresh = make_config(file_state, dblocation=str(tmp_path / "fresh"), logArea=str(tmp_path / "fresh-log"))
    status = Runner(fresh).update()

    assert status["image"] == new_image and status["applied"] == 2
    assert len(status["recent"]) == 1  # only the add after the new image
    assert graph_triples(store_quads(fresh.db_dir), G1) == {
        "<http://example.org/base> <http://example.org/p> <http://example.org/o>",
        "<http://example.org/a> <http://example.org/p> <http://example.org/b>",
        "<http://example.org/c> <http://example.org/p> <http://example.org/d>",
    }
    import gzip

    lines = gzip.decompress(dump.getvalue()).decode().splitlines()
    assert len(lines) == 2 and not any("urn:x-dms-update" in line for line in lines)


def test_update_refuses_to_replace_a_store_it_did_not_build(file_state, make_config, tmp_path):
    import pyoxigraph as ox

    file_state.publish_image(0, [], tmp_path)
    config = make_config(file_state)
    config.db_dir.parent.mkdir(parents=True)
    foreign = ox.Store(str(config.db_dir))
    foreign.add(quad("precious", "p", "o"))
    del foreign

    refused = Runner(config).update()
    rebuilt = Runner(config).rebuild()

    assert refused["lastSucceeded"] is False and "rebuild" in refused["error"]
    assert rebuilt["lastSucceeded"] is True and store_quads(config.db_dir) == set()


def test_rdf_xml_and_n_quads_files_load_into_their_graph(file_state, make_config, tmp_path):
    rdf = (
        '<?xml version="1.0"?>\n'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns:ex="http://example.org/">\n'
        '  <rdf:Description rdf:about="http://example.org/x"><ex:p rdf:resource="http://example.org/y"/>'
        "</rdf:Description>\n</rdf:RDF>\n"
    )
    file_state.publish_image(0, [quad("old", "p", "o", G2)], tmp_path)
    file_state.publish(10, "add", rdf, arg=G1, fmt="rdf")
    file_state.publish(20, "replace", rdf, arg=G2, fmt="rdf.gz")
    file_state.publish(
        30,
        "add",
        "<http://example.org/q> <http://example.org/p> <http://example.org/r> .\n",
        arg=G1,
        fmt="nq",
    )
    config = make_config(file_state)

    status = Runner(config).update()

    assert status["lastSucceeded"] is True, status
    lines = store_quads(config.db_dir)
    assert graph_triples(lines, G1) == {
        "<http://example.org/x> <http://example.org/p> <http://example.org/y>",
        "<http://example.org/q> <http://example.org/p> <http://example.org/r>",
    }
    assert graph_triples(lines, G2) == {
        "<http://example.org/x> <http://example.org/p> <http://example.org/y>"
    }
