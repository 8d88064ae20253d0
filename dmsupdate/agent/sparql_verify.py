"""`verify: counts` (DESIGN §5): a 2xx answer is not proof, so the store is asked what it holds.

After each graph operation:
- `replace`: the graph holds exactly the file's distinct triples;
- `add`: the graph grew by at most the file's distinct triples and by at least
  those holding a blank node (a file's blank nodes are always new to the
  store), and a sample of the file's triples without blank nodes is there;
- `drop`: the graph is empty;
and after a dump load, every graph of the dump holds the dump's count and no
other graph is left (the store's own system graphs aside). A mismatch is an
OperationFailed that says what was expected and what was found.

Known limit: a store that rewrites literals (Virtuoso stores `"01"^^xsd:integer`
as `"1"`) may count two of a file's triples as one, and fails `replace` there.
"""

from __future__ import annotations

from dmsupdate.agent.endpoints import is_system_graph
from dmsupdate.agent.errors import OperationFailed
from dmsupdate.agent.rdfspool import ContentFacts, GraphFacts
from dmsupdate.agent.sparql_http import SparqlClient, iri


class VerifyFailed(OperationFailed):
    """The store does not hold what it was sent."""


def _fail(client: SparqlClient, what: str, text: str) -> VerifyFailed:
    return VerifyFailed(client.redact(f"{what}: verify: {text}"))


def verify_replace(client: SparqlClient, graph: str, facts: GraphFacts, what: str) -> None:
    found = client.graph_triples(graph, what)
    if found != facts.triples:
        raise _fail(
            client,
            what,
            f"graph <{graph}> holds {found} triples after the replace; "
            f"expected {facts.triples} (the file's distinct triples)",
        )


def verify_add(client: SparqlClient, graph: str, before: int, facts: GraphFacts, what: str) -> None:
    after = client.graph_triples(graph, what)
    grew = after - before
    if not facts.blank <= grew <= facts.triples:
        expected = (
            f"at most {facts.triples}" if facts.blank == 0 else f"between {facts.blank} and {facts.triples}"
        )
        raise _fail(
            client,
            what,
            f"graph <{graph}> grew by {grew} triples ({before} → {after}); expected {expected} "
            f"(the file's distinct triples, {facts.blank} of them with blank nodes)",
        )
    if facts.sample and not _all_there(client, graph, facts.sample, what):
        missing = [t for t in facts.sample if not _all_there(client, graph, [t], what)]
        raise _fail(
            client,
            what,
            f"{len(missing)} of {len(facts.sample)} sampled triples of the file are not in graph <{graph}> "
            f"after the add (e.g. {missing[0] if missing else '?'})",
        )


def _all_there(client: SparqlClient, graph: str, triples: list[str], what: str) -> bool:
    body = " .\n".join(triples)
    return client.ask(f"ASK {{ GRAPH {iri(graph)} {{\n{body} .\n}} }}", what)


def verify_dropped(client: SparqlClient, graph: str, what: str) -> None:
    found = client.graph_triples(graph, what)
    if found:
        raise _fail(client, what, f"graph <{graph}> still holds {found} triples after the drop; expected 0")


def data_graphs(client: SparqlClient, system_graphs: tuple[str, ...], what: str) -> dict[str, int]:
    """The store's named graphs with their counts, its own system graphs left out."""
    return {g: n for g, n in client.graph_counts(what).items() if n and not is_system_graph(g, system_graphs)}


def verify_dataset(
    client: SparqlClient, facts: ContentFacts, system_graphs: tuple[str, ...], what: str
) -> None:
    """After a dump load: each graph's count is the dump's, and no other graph holds anything."""
    found = data_graphs(client, system_graphs, what)
    problems = []
    for graph, expected in sorted(facts.graphs.items(), key=lambda item: item[0] or ""):
        if not graph:
            continue  # the default graph: counted below
        n = found.pop(graph, 0)
        if n != expected.triples:
            problems.append(f"<{graph}> holds {n} triples, the dump {expected.triples}")
    for graph, n in sorted(found.items()):
        problems.append(f"<{graph}> holds {n} triples, the dump none")
    default = facts.graphs.get("")
    if default is not None:
        n = client.count("SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }", what)
        if n != default.triples:
            problems.append(f"the default graph holds {n} triples, the dump {default.triples}")
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise _fail(client, what, f"the store does not hold the dump: {shown}")
