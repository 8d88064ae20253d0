"""Loading a dump into a SPARQL store without an `install_dump` hook.

1. The dump is decompressed into a temporary file (size and MD5 checked).
2. The store is emptied for real: its named graphs are listed and each is
   deleted (Graph Store DELETE), then the default graph; the store's own system
   graphs (`system_graphs`: Virtuoso's `http://www.openlinksw.com/…`,
   `virtrdf:`, LDP and service-description graphs) are left alone. `DROP ALL`
   is not used: Virtuoso answers it 200 and drops nothing. The listing is
   taken again to check that nothing is left.
3. Whether the store takes N-Quads is asked of the store itself, each time: one
   quad is POSTed to the Graph Store endpoint into a probe graph
   (`urn:x-dms-update:probe`) and looked for with ASK, then deleted. A store
   that stores it (Oxigraph server, Fuseki, GraphDB) gets the whole dump in one
   N-Quads POST; one that refuses it or answers with an HTML page (Virtuoso
   answers a quads POST 200 with an upload form and stores nothing) gets it
   graph by graph, each graph's triples PUT as N-Triples. Blank nodes shared
   between graphs become distinct per graph in that mode.
4. With `verify: counts`, each graph's count is compared with the dump's.
"""

from __future__ import annotations

from typing import IO

from dmsupdate.agent.errors import OperationFailed
from dmsupdate.agent.rdfspool import ContentFacts, graph_files, read_facts, spool
from dmsupdate.agent.sparql_http import SparqlClient, is_html_page
from dmsupdate.agent.sparql_verify import data_graphs, verify_dataset
from dmsupdate.state.stores import ObjectInfo, ObjectStore, StoreError, open_verified

NQUADS = "application/n-quads"
PROBE_GRAPH = "urn:x-dms-update:probe"
PROBE = f'<{PROBE_GRAPH}> <{PROBE_GRAPH}> "probe" <{PROBE_GRAPH}> .\n'.encode()


def spool_dump(source: ObjectStore, info: ObjectInfo, what: str) -> IO[bytes]:
    """The decompressed dump in a temporary file, its size and MD5 checked."""
    try:
        with open_verified(source, info, decompress=True) as stream:
            body = spool(stream)
            stream.read(1)
        return body
    except (OSError, EOFError, StoreError) as exc:
        raise OperationFailed(f"{what}: cannot read {info.key}: {exc}") from exc


def dump_facts(body: IO[bytes], key: str, what: str) -> ContentFacts:
    try:
        return read_facts(body, NQUADS, key)
    except (SyntaxError, ValueError) as exc:
        raise OperationFailed(f"{what}: the dump is not valid N-Quads: {exc}") from exc


def empty_store(client: SparqlClient, system_graphs: tuple[str, ...], what: str) -> None:
    """Delete every graph but the store's own, then check that none is left."""
    for graph in data_graphs(client, system_graphs, what):
        client.delete_graph(graph, what)
    response = client.request("DELETE", client.gsp_url, what, params={"default": ""})
    if response.status_code in (401, 403, 429, 503):
        client.check(response, what)
    # Other refusals mean the store has no default graph of its own to address (Virtuoso): nothing to do.
    left = data_graphs(client, system_graphs, what)
    if left:
        shown = ", ".join(f"<{g}> ({n} triples)" for g, n in sorted(left.items())[:5])
        raise OperationFailed(client.redact(f"{what}: the store still holds {shown} after it was emptied"))


def takes_quads(client: SparqlClient, what: str) -> bool:
    """Whether the Graph Store endpoint stores an N-Quads POST (asked of the store with one probe quad)."""
    response = client.request(
        "POST", client.gsp_url, what, data=PROBE, headers={"Content-Type": NQUADS}, timeout=(10, 60)
    )
    if response.status_code in (401, 403, 429, 503):
        client.check(response, what)
    if response.status_code >= 300 or is_html_page(response):
        return False
    stored = client.ask(f"ASK {{ GRAPH <{PROBE_GRAPH}> {{ ?s ?p ?o }} }}", what)
    client.delete_graph(PROBE_GRAPH, what)
    return stored


def load_dump(
    client: SparqlClient,
    source: ObjectStore,
    info: ObjectInfo,
    system_graphs: tuple[str, ...],
    verify: bool,
    what: str,
) -> str:
    """Empty the store and load the dump into it; return how (`quads` or `graphs`)."""
    with spool_dump(source, info, what) as body:
        facts = dump_facts(body, info.key, what) if verify else None
        empty_store(client, system_graphs, what)
        if takes_quads(client, what):
            client.send("POST", body, NQUADS, None, what)
            mode = "quads"
        else:
            try:
                for graph, triples in graph_files(body):
                    params = {"graph": graph} if graph else {"default": ""}
                    client.send("PUT", triples, "application/n-triples", params, f"{what} (graph <{graph}>)")
            except (SyntaxError, ValueError) as exc:
                raise OperationFailed(f"{what}: the dump is not valid N-Quads: {exc}") from exc
            mode = "graphs"
        if facts is not None:
            verify_dataset(client, facts, system_graphs, what)
    return mode


def verify_hook_load(
    client: SparqlClient, source: ObjectStore, info: ObjectInfo, system_graphs: tuple[str, ...], what: str
) -> None:
    """After an `install_dump` hook: the store holds the dump, graph by graph (the dump is read again)."""
    with spool_dump(source, info, what) as body:
        facts = dump_facts(body, info.key, what)
    verify_dataset(client, facts, system_graphs, what)
