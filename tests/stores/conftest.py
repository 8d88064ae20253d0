"""Fixtures for the agent against real triple stores: a private Virtuoso per test session, Oxigraph server.

Virtuoso's tests FAIL when `virtuoso-t` is missing (nothing is skipped silently;
`.ci/run` installs Debian's `virtuoso-opensource`). Set
`DMSUPDATE_SKIP_VIRTUOSO=1` to skip them on a machine without it, knowingly.
Under xdist each worker process starts its own Virtuoso (the session scope is
per process), on its own ports and database folder, so tests never share one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pyoxigraph as ox
import pytest
import requests
from requests.auth import HTTPDigestAuth

from dmsupdate.agent.endpoints import SYSTEM_GRAPHS, is_system_graph
from dmsupdate.agent.runner import Runner
from tests.agent.conftest import StateRoot, file_state, ttl  # noqa: F401 (file_state: a fixture)
from tests.reliability.conftest import agent_config, canonical, store_snapshot
from tests.stores.authproxy import AuthProxy
from tests.stores.instances import (
    SPARQL_PASSWORD,
    SPARQL_USER,
    OxigraphServer,
    Virtuoso,
    start_oxigraph,
    start_virtuoso,
    virtuoso_missing,
)

PROXY_USER = "fleet-agent"
PROXY_PASSWORD = "proxyS3cretPw"
G1 = "http://example.org/graph/one"
G2 = "http://example.org/graph/two"
G_HASH = "http://example.org/graph#fragment"
G_UNI = "http://example.org/graph/dépôt-ünï#x"
EX = "http://example.org/"


@pytest.fixture(scope="session")
def virtuoso(tmp_path_factory) -> Iterator[Virtuoso]:
    why = virtuoso_missing()
    if why is not None:
        if os.environ.get("DMSUPDATE_SKIP_VIRTUOSO") == "1":
            pytest.skip(f"DMSUPDATE_SKIP_VIRTUOSO=1 and {why}")
        pytest.fail(f"{why}: the Virtuoso tests cannot run (set DMSUPDATE_SKIP_VIRTUOSO=1 to skip them)")
    inst = start_virtuoso(tmp_path_factory.mktemp("virtuoso"))
    try:
        yield inst
    finally:
        inst.stop()


@pytest.fixture
def fuseki_like(tmp_path) -> Iterator[tuple[AuthProxy, OxigraphServer]]:
    """`oxigraph serve` behind a basic-auth proxy that serves Fuseki's `/ds/query|update|data`."""
    server = start_oxigraph(tmp_path / "oxigraph")
    proxy = AuthProxy(server.base, PROXY_USER, PROXY_PASSWORD)
    try:
        yield proxy, server
    finally:
        proxy.close()
        server.stop()


def _term(cell: dict) -> ox.NamedNode | ox.BlankNode | ox.Literal:
    kind = cell["type"]
    if kind == "uri":
        return ox.NamedNode(cell["value"])
    if kind == "bnode":
        return ox.BlankNode(cell["value"].replace("nodeID://", "").replace(":", "_") or "b")
    if "xml:lang" in cell:
        return ox.Literal(cell["value"], language=cell["xml:lang"])
    if cell.get("datatype"):
        return ox.Literal(cell["value"], datatype=ox.NamedNode(cell["datatype"]))
    return ox.Literal(cell["value"])


def store_contents(query_url: str, auth=None, system_graphs=SYSTEM_GRAPHS) -> set[str]:
    """Every quad a store holds in named graphs (its own system graphs left out), canonical."""
    r = requests.post(
        query_url,
        data={"query": "SELECT ?g ?s ?p ?o WHERE { GRAPH ?g { ?s ?p ?o } }"},
        headers={"Accept": "application/sparql-results+json"},
        auth=auth,
        timeout=60,
    )
    r.raise_for_status()
    quads = []
    for row in r.json()["results"]["bindings"]:
        if is_system_graph(row["g"]["value"], system_graphs):
            continue
        s, p, o, g = (_term(row[v]) for v in ("s", "p", "o", "g"))
        quads.append(ox.Quad(s, p, o, g))  # type: ignore[arg-type]
    return canonical(quads)


def virtuoso_auth() -> HTTPDigestAuth:
    return HTTPDigestAuth(SPARQL_USER, SPARQL_PASSWORD)


def embedded_replay(state: StateRoot, home: Path) -> set[str]:
    """What the embedded store holds after replaying the same root (canonical quads)."""
    config = agent_config(state.root, home, state.endpoint)
    status = Runner(config).update()
    assert status["lastSucceeded"] is True, status
    return store_snapshot(config.db_dir)[0]


def q(s: str, p: str, o: ox.NamedNode | ox.BlankNode | ox.Literal | str, g: str) -> ox.Quad:
    obj = ox.NamedNode(EX + o) if isinstance(o, str) else o
    return ox.Quad(ox.NamedNode(EX + s), ox.NamedNode(EX + p), obj, ox.NamedNode(g))


RDF_XML = """<?xml version="1.0" encoding="utf-8"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns:ex="http://example.org/">
  <rdf:Description rdf:about="http://example.org/xml1">
    <ex:label xml:lang="fr">dépôt</ex:label>
    <ex:knows><rdf:Description><ex:name>anonymous</ex:name></rdf:Description></ex:knows>
  </rdf:Description>
</rdf:RDF>
"""


def publish_cycle(state: StateRoot, dump: bool = True) -> list[str]:
    """A dump then every kind of update: all formats (.gz too), blank nodes, IRIs with # and non-ASCII."""
    keys = []
    if dump:
        blank = ox.BlankNode("shared")
        keys.append(
            state.publish_dump(
                0,
                [
                    q("base", "p", "o", G1),
                    q("base", "p", ox.Literal("ünïcödé", language="de"), G_UNI),
                    q(
                        "h",
                        "p",
                        ox.Literal("7", datatype=ox.NamedNode("http://www.w3.org/2001/XMLSchema#integer")),
                        G_HASH,
                    ),
                    ox.Quad(ox.NamedNode(EX + "b"), ox.NamedNode(EX + "p"), blank, ox.NamedNode(G2)),
                    ox.Quad(blank, ox.NamedNode(EX + "name"), ox.Literal("in dump"), ox.NamedNode(G2)),
                    q("dropme", "p", "o", "http://example.org/graph/gone"),
                ],
            )
        )
    keys.append(
        state.publish(
            10, "add", ttl('ex:a ex:p [ ex:q "blank"@en ] .', "ex:a ex:r ex:b ."), arg=G1, fmt="ttl"
        )
    )
    keys.append(
        state.publish(
            20,
            "add",
            f'<{EX}n1> <{EX}p> "tab\\there" .\n<{EX}n1> <{EX}p> <{EX}n2> .\n',
            arg=G_HASH,
            fmt="nt.gz",
        )
    )
    keys.append(state.publish(30, "replace", RDF_XML, arg=G_UNI, fmt="rdf"))
    keys.append(
        state.publish(
            40, "replace", ttl("ex:r1 ex:p ex:r2 .", "_:x ex:p _:y .", "_:y ex:p _:x ."), arg=G2, fmt="ttl.gz"
        )
    )
    keys.append(state.publish(50, "drop", arg="http://example.org/graph/gone"))
    keys.append(
        state.publish(
            60, "update", f'INSERT DATA {{ GRAPH <{G2}> {{ <{EX}u> <{EX}p> "updated" }} }}', fmt="ru"
        )
    )
    keys.append(
        state.publish(
            70,
            "postproc",
            f'INSERT {{ GRAPH <{G_HASH}> {{ ?s <{EX}seen> "yes" }} }} WHERE {{ GRAPH <{G_HASH}> {{ ?s <{EX}p> <{EX}n2> }} }}',
            arg="stats",
            fmt="ru.gz",
        )
    )
    keys.append(state.publish(80, "add", RDF_XML.replace("xml1", "xml2"), arg=G1, fmt="rdf.gz"))
    keys.append(
        state.publish(90, "add", f"<{EX}n1> <{EX}p> <{EX}n2> .\n", arg=G_HASH, fmt="nt")
    )  # already there
    return keys
