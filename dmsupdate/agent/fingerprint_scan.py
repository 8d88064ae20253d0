"""Scanning a store for its fingerprint (DESIGN §5b; the definition is dmsupdate.state.fingerprint).

The embedded store is read through Oxigraph's own N-Triples serializer (`Store.dump`,
graph by graph, in chunks): its output is canonical N-Triples already (RDF 1.2
escaping, language tags lower-cased, `xsd:string` left out), so each chunk is cut
into lines and hashed without a Python step per triple. Lines holding `_:` go the
slow way, parsed back into terms and written with `_:b` for every blank node.
Memory stays that of one chunk, whatever the graph's size.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pyoxigraph as ox

from dmsupdate.state.fingerprint import BLANK, GraphSum, iri, is_bookkeeping, literal, triple_line

Term = ox.NamedNode | ox.BlankNode | ox.Literal | ox.Triple


def term_text(term: Any) -> str:
    """A pyoxigraph term in canonical N-Triples, every blank node `_:b`."""
    if isinstance(term, ox.NamedNode):
        return iri(term.value)
    if isinstance(term, ox.BlankNode):
        return BLANK
    if isinstance(term, ox.Literal):
        return literal(term.value, term.language, term.datatype.value)
    if isinstance(term, ox.Triple):
        return f"<<( {term_text(term.subject)} {term_text(term.predicate)} {term_text(term.object)} )>>"
    raise TypeError(f"not an RDF term: {term!r}")


def triple_text(triple: Any) -> str:
    """A triple's (or quad's) line: its three terms, canonical, joined by one space."""
    return triple_line(term_text(triple.subject), term_text(triple.predicate), term_text(triple.object))


def graph_name(graph: Any) -> str:
    """'' for the default graph, else the graph's IRI (blank-node graph names by their label)."""
    return "" if isinstance(graph, ox.DefaultGraph) else str(graph.value)


class LineHasher:
    """A writable stream of N-Triples lines (as `Store.dump` writes them) adding each line to a GraphSum."""

    def __init__(self) -> None:
        self.found = GraphSum()
        self._carry = b""

    def write(self, data: bytes) -> int:
        given = len(data)
        data = self._carry + bytes(data)
        cut = data.rfind(b"\n") + 1
        self._carry = data[cut:]
        if cut:
            self._add(data[:cut])
        return given

    def flush(self) -> None:
        """Called by the serializer; lines are hashed as they arrive."""

    def close(self) -> GraphSum:
        if self._carry.strip():
            self._add(self._carry + b"\n")
        self._carry = b""
        return self.found

    def _add(self, block: bytes) -> None:
        # N-Triples escapes every newline inside a literal, so " .\n" only ends a line.
        lines = block.replace(b" .\n", b"\n").split(b"\n")
        lines.pop()
        if b"_:" not in block:
            self.found.add_lines(lines)
            return
        plain = [line for line in lines if b"_:" not in line]
        blank = [line for line in lines if b"_:" in line]
        self.found.add_lines(plain)
        # "_:" may also sit inside a literal or an IRI: parsing tells which lines hold blank nodes.
        parsed = ox.parse(input=b" .\n".join(blank) + b" .\n", format=ox.RdfFormat.N_TRIPLES)
        self.found.add_lines([triple_text(t).encode() for t in parsed])


def data_graphs(store: ox.Store) -> Iterator[Any]:
    """The default graph and every named graph, the agent's own graphs left out."""
    yield ox.DefaultGraph()
    for graph in store.named_graphs():
        if not is_bookkeeping(graph_name(graph)):
            yield graph


def scan_graph(store: ox.Store, graph: Any) -> GraphSum:
    """The triple count and hash sum of one graph of an embedded store (one pass over it)."""
    hasher = LineHasher()
    store.dump(hasher, format=ox.RdfFormat.N_TRIPLES, from_graph=graph)  # type: ignore[arg-type]
    return hasher.close()


def scan_store(store: ox.Store) -> dict[str, GraphSum]:
    """Every data graph of an embedded store with its count and hash sum (empty graphs left out)."""
    found = {}
    for graph in data_graphs(store):
        summed = scan_graph(store, graph)
        if summed.triples:
            found[graph_name(graph)] = summed
    return found


def count_graph(store: ox.Store, graph: Any) -> int:
    """How many triples one graph of an embedded store holds (counted on the index: no term is decoded)."""
    pattern = "?s ?p ?o" if isinstance(graph, ox.DefaultGraph) else f"GRAPH {graph} {{ ?s ?p ?o }}"
    for row in store.query(f"SELECT (COUNT(*) AS ?n) WHERE {{ {pattern} }}"):  # type: ignore[union-attr]
        return int(row[0].value)
    return 0


def count_store(store: ox.Store) -> dict[str, int]:
    """Every data graph of an embedded store with its triple count (empty graphs left out)."""
    found = {"": count_graph(store, ox.DefaultGraph())}
    query = "SELECT ?g (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } } GROUP BY ?g"
    for row in store.query(query):  # type: ignore[union-attr]
        name = graph_name(row[0])
        if not is_bookkeeping(name):
            found[name] = int(row[1].value)
    return {g: n for g, n in found.items() if n}


def sum_triples(triples: Iterable[Any]) -> GraphSum:
    """The count and hash sum of parsed triples (a stream from an endpoint), in batches."""
    found = GraphSum()
    batch: list[bytes] = []
    for triple in triples:
        batch.append(triple_text(triple).encode())
        if len(batch) >= 10_000:
            found.add_lines(batch)
            batch = []
    found.add_lines(batch)
    return found
