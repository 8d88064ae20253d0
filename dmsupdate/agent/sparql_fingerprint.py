"""The fingerprint of a SPARQL endpoint's store (DESIGN §5b), computed over HTTP.

Counts: one `GROUP BY ?g` query. Full: each graph the counts name is streamed
as N-Triples (a CONSTRUCT of the graph) and parsed as it arrives, each triple
written canonically and hashed; no graph is ever held in memory. The endpoint's
own N-Triples are not trusted to be canonical (escaping, blank node labels,
language tag case differ between stores): every term is written again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyoxigraph as ox

from dmsupdate.agent.endpoints import is_system_graph
from dmsupdate.agent.errors import OperationFailed
from dmsupdate.agent.fingerprint_scan import sum_triples
from dmsupdate.state.fingerprint import build_fingerprint, is_bookkeeping
from dmsupdate.state.status import now_iso

if TYPE_CHECKING:
    from dmsupdate.agent.sparql import SparqlBackend

COUNTS_QUERY = "SELECT ?g (COUNT(*) AS ?n) WHERE { { ?s ?p ?o } UNION { GRAPH ?g { ?s ?p ?o } } } GROUP BY ?g"
RESULTS_JSON = "application/sparql-results+json"
N_TRIPLES = "application/n-triples"


def _query(backend: SparqlBackend, query: str, accept: str, stream: bool = False) -> Any:
    from dmsupdate.agent.sparql import check_response

    what = "fingerprint query"
    response = backend._request(
        "POST",
        backend.query_url,
        what,
        data={"query": query},
        headers={"Accept": accept},
        stream=stream,
    )
    check_response(response, what)
    return response


def graph_counts(backend: SparqlBackend) -> dict[str, int]:
    """Triples per graph ('' = default graph): one query; the agent's and the store's own graphs left out.

    A store whose default graph is the union of its named graphs (Virtuoso) answers
    for the default graph the sum of every named graph: that is no graph of its own
    and is left out too (the named graphs, the store's system graphs included, hold
    exactly those triples).
    """
    response = _query(backend, COUNTS_QUERY, RESULTS_JSON)
    try:
        rows = response.json()["results"]["bindings"]
        every: dict[str, int] = {}
        for row in rows:
            graph = row.get("g", {}).get("value", "")
            every[graph] = every.get(graph, 0) + int(row["n"]["value"])
    except (ValueError, KeyError, TypeError) as exc:
        raise OperationFailed(f"the endpoint's answer to the count query cannot be read: {exc}") from exc
    named = sum(n for g, n in every.items() if g)
    if named and every.get("", 0) == named:
        every.pop("")  # a union default graph
    system = backend.config.system_graphs
    return {g: n for g, n in every.items() if n and not is_bookkeeping(g) and not is_system_graph(g, system)}


def _construct(graph: str) -> str:
    if not graph:
        return "CONSTRUCT { ?s ?p ?o } WHERE { ?s ?p ?o }"
    return f"CONSTRUCT {{ ?s ?p ?o }} WHERE {{ GRAPH <{graph}> {{ ?s ?p ?o }} }}"


def endpoint_fingerprint(backend: SparqlBackend, mode: str, effective: str | None) -> dict[str, Any]:
    """The endpoint's fingerprint in `mode` (counts: one query; full: every graph streamed)."""
    counts = graph_counts(backend)
    if mode != "full":
        graphs: dict[str, tuple[int, str | None]] = {g: (n, None) for g, n in counts.items()}
        return build_fingerprint(graphs, "counts", effective, now_iso())
    graphs = {}
    for graph in sorted(counts):
        response = _query(backend, _construct(graph), N_TRIPLES, stream=True)
        try:
            response.raw.decode_content = True
            summed = sum_triples(ox.parse(input=response.raw, format=ox.RdfFormat.N_TRIPLES))
        except (SyntaxError, OSError, ValueError) as exc:
            raise OperationFailed(
                f"graph <{graph}> could not be read back for its fingerprint: {exc}"
            ) from exc
        finally:
            response.close()
        graphs[graph] = (summed.triples, summed.hash)
    return build_fingerprint(graphs, "full", effective, now_iso())
