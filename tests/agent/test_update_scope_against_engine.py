"""The graphs update_scope names for a SPARQL update cover every graph the engine changes with it.

The kept fingerprint counts again only the graphs a run's updates may have changed, so a
graph the reading misses would keep a stale count. Generated updates (operations and
terms chosen among those whose reading is easy to get wrong: escaped names, quotes and
braces in strings, comments ending at a carriage return, GRAPH blocks, WITH, USING) run
on a store holding data in several graphs; every graph whose triples changed must be
among those named, or the reading must have answered "everything" (None).
"""

from __future__ import annotations

import pyoxigraph as ox
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dmsupdate.agent.update_scope import touched_graphs

GRAPHS = ["http://example.org/g1", "http://example.org/g2", "http://example.org/g3"]
TERMS = [
    "ex:o",
    "ex:o\\'",
    "ex:a\\(",
    "ex:a\\#b",
    "'x'",
    '"x}"',
    "'''a'b{'''",
    '"""a"b"""',
    '"#"',
    "<http://a#b>",
    '"x"@en',
    "12",
    "_:b",
    "[ ex:q 1 ]",
]
SEPARATORS = [" ", "\n", "\r", " # } GRAPH <http://example.org/g3> {\r", " # note\n"]


@st.composite
def updates(draw) -> str:
    gap = draw(st.sampled_from(SEPARATORS))
    graph = draw(st.sampled_from(GRAPHS))
    other = draw(st.sampled_from(GRAPHS))
    term = draw(st.sampled_from(TERMS))
    operations = [
        f"INSERT DATA {{{gap}GRAPH <{graph}> {{ ex:s ex:p {term} }} }}",
        f"INSERT DATA {{ ex:s ex:p {term} }}",
        f"DELETE DATA {{ GRAPH <{graph}> {{ ex:s0 ex:p ex:o0 }} }}",
        f"WITH <{graph}> DELETE {{ ?s ?p ?o }}{gap}WHERE {{ ?s ?p ?o }}",
        f"WITH <{graph}> INSERT {{ ex:s ex:p {term} }} WHERE {{ GRAPH <{other}> {{ ?s ?p ?o }} }}",
        f"DELETE {{ GRAPH <{graph}> {{ ?s ?p ?o }} }} USING <{other}> WHERE {{ ?s ?p ?o }}",
        f"INSERT {{ GRAPH <{graph}> {{ ex:s ex:p {term} }} }} WHERE {{}}",
        f"DROP SILENT GRAPH <{graph}>",
        f"COPY <{graph}> TO <{other}>",
        f"MOVE SILENT <{graph}> TO <{other}>",
        f"ADD <{graph}> TO DEFAULT",
        "CLEAR DEFAULT",
        f"DELETE WHERE {{ GRAPH <{graph}> {{ ?s ?p ?o }} }}",
        "DELETE { GRAPH ?g { ?s ?p ?o } } WHERE { GRAPH ?g { ?s ?p ?o } }",
    ]
    chosen = draw(st.lists(st.sampled_from(operations), min_size=1, max_size=3))
    return f"PREFIX ex: <http://example.org/>{gap}" + f"{gap};{gap}".join(chosen)


def contents(store: ox.Store) -> dict[str, set]:
    found: dict[str, set] = {}
    for q in store:
        name = "" if isinstance(q.graph_name, ox.DefaultGraph) else q.graph_name.value
        found.setdefault(name, set()).add((q.subject, q.predicate, q.object))
    return found


def seeded() -> ox.Store:
    store = ox.Store()
    ex = "http://example.org/"
    for name in ["", *GRAPHS]:
        graph = ox.NamedNode(name) if name else ox.DefaultGraph()
        for i in range(2):
            store.add(
                ox.Quad(ox.NamedNode(f"{ex}s{i}"), ox.NamedNode(f"{ex}p"), ox.NamedNode(f"{ex}o{i}"), graph)
            )
    return store


@given(updates())
@settings(
    max_examples=300, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)
def test_every_graph_the_engine_changes_is_named(text):
    store = seeded()
    before = contents(store)
    try:
        store.update(text)
    except SyntaxError:
        return
    after = contents(store)
    changed = {g for g in set(before) | set(after) if before.get(g) != after.get(g)}
    named = touched_graphs(text)
    assert named is None or changed <= named, (text, changed, named)
