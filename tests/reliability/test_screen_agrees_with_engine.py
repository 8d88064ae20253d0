"""The update screen reads SPARQL as the engine does: no term can hide a LOAD or SERVICE that the engine runs.

The screen (dmsupdate.state.content.check_sparql_update) is lexical. Where its reading
of a token differs from the engine's (a quote escaped inside a prefixed name, a comment
ending at a carriage return), text it takes for a string or a comment can be a keyword
to the engine. Generated updates put a fetch between terms built from those pieces; the
engine here is pyoxigraph, the store the agent embeds, with an HTTP client: a fetch it
attempts of port 9 fails with an error naming the port, so an attempt is seen without
any traffic. Whenever the engine would fetch, the screen must have refused.
"""

from __future__ import annotations

import pyoxigraph as ox
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dmsupdate.state.content import UnsafeContent, check_sparql_update

FETCHES = [
    "LOAD <http://127.0.0.1:9/x> INTO GRAPH <urn:g>",
    "INSERT { <urn:s> <urn:p> ?o } WHERE { SERVICE <http://127.0.0.1:9/> { ?s ?p ?o } }",
]
# Terms whose reading a lexical screen can get wrong, each valid where an object may stand.
TERMS = [
    "ex:o",
    "ex:o\\'",
    "ex:o\\'x",
    "ex:o\\-",
    "ex:a\\(",
    "ex:a\\)",
    "ex:a\\#b",
    "ex:a\\;",
    "ex:a\\,",
    "ex:a%20b",
    "'x'",
    '"x"',
    "'''a'b'''",
    '"""a"b"""',
    "'\\''",
    '"\\""',
    '"{"',
    "'}'",
    '"#"',
    "<http://a#b>",
    '"x"@en',
    '"1"^^<http://www.w3.org/2001/XMLSchema#integer>',
    "12",
    "1.5e3",
    "true",
    "_:b",
    "[]",
    "( 1 2 )",
]
SEPARATORS = [" ", "\n", "\r", "\t", " # note\r", " # note\n", " # ' \" {\n"]
FUZZ = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def engine_fetches(text: str) -> bool:
    try:
        ox.Store().update(text)
    except OSError as exc:
        return "port 9" in str(exc)
    except (SyntaxError, ValueError):
        return False
    return False


def screen_refuses(text: str) -> bool:
    try:
        check_sparql_update(text)
    except UnsafeContent:
        return True
    return False


@st.composite
def hiding_updates(draw) -> str:
    before = draw(st.lists(st.sampled_from(TERMS), min_size=1, max_size=3))
    after = draw(st.lists(st.sampled_from(TERMS), min_size=1, max_size=3))
    gap = draw(st.sampled_from(SEPARATORS))
    fetch = draw(st.sampled_from(FETCHES))

    def insert(terms: list[str]) -> str:
        body = " . ".join(f"ex:s ex:p {term}" for term in terms)
        return f"INSERT {{ {body} }} WHERE {{}}"

    return (
        f"PREFIX ex: <http://example.org/>{gap}{insert(before)}{gap};{gap}{fetch}{gap};{gap}{insert(after)}"
    )


@given(hiding_updates())
@FUZZ
def test_whenever_the_engine_would_fetch_the_screen_refuses(text):
    if engine_fetches(text):
        assert screen_refuses(text), text


@pytest.mark.parametrize(
    "text",
    [
        "PREFIX ex: <http://example.org/> INSERT { ex:s ex:p ex:o\\' } WHERE {} ; "
        "LOAD <http://127.0.0.1:9/x> INTO GRAPH <urn:g> ; INSERT { ex:s ex:p 'x' } WHERE {}",
        "PREFIX ex: <http://example.org/> INSERT { ex:s ex:p ex:a\\( } WHERE {} ; "
        "LOAD <http://127.0.0.1:9/x> INTO GRAPH <urn:g>",
    ],
)
def test_a_fetch_behind_an_escaped_name_is_run_by_the_engine_and_refused_by_the_screen(text):
    assert engine_fetches(text)  # the case is real: the engine reads the name whole and runs the LOAD
    assert screen_refuses(text)
