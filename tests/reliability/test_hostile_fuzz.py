"""Generated hostile bodies (hypothesis): RDF/XML, Turtle and SPARQL Update publications, and status reports.

Whatever comes in, the answer is a 2xx or a 4xx with the `{"error", "detail"}` body: never a 500, never
a dead worker. Bodies are built from the pieces attackers use (entities, deep nesting, LOAD, SERVICE,
huge numbers, odd times), mixed with noise.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publications.models import Dataset
from servers.models import Server
from tests.api.fixtures import make_caller

EXAMPLES = 60
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
pytestmark = pytest.mark.django_db

SPARQL_PIECES = [
    "INSERT DATA",
    "DELETE DATA",
    "DELETE",
    "INSERT",
    "WHERE",
    "LOAD",
    "SERVICE",
    "SILENT",
    "INTO GRAPH",
    "DROP",
    "CLEAR",
    "ALL",
    "NAMED",
    "DEFAULT",
    "GRAPH",
    "OPTIONAL",
    "FILTER",
    "BIND",
    "AS",
    "VALUES",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ";",
    ".",
    ",",
    "+",
    "!",
    "||",
    "<",
    ">",
    "?s",
    "?p",
    "?o",
    "$x",
    "a",
    "<http://example.org/s>",
    "<http://127.0.0.1:1/>",
    "<rel>",
    '"lit"',
    "'''long'''",
    '"\\u0000"',
    "1e999",
    "PREFIX ex: <http://e/>",
    "ex:p",
    ":x",
    "_:b",
    "@en",
    "^^",
    "#comment\n",
    "\n",
    "\x00",
    "é",
    "\\",
]
TTL_PIECES = [
    "@prefix ex: <http://e/> .",
    "<http://e/s>",
    "ex:p",
    "ex:o",
    "[",
    "]",
    "(",
    ")",
    ";",
    ",",
    ".",
    "a",
    '"lit"',
    '"""long"""',
    "@en",
    "^^ex:t",
    "_:b",
    "1",
    "1.5e99",
    "true",
    "<rel>",
    "<http://e/a b>",
    "\x00",
    "@base <http://e/> .",
    "GRAPH",
    "{",
    "}",
    "\n",
    "é",
    "\\u0000",
]
XML_PIECES = [
    '<?xml version="1.0"?>',
    "<!DOCTYPE r [",
    '<!ENTITY a "xx">',
    "]>",
    "&a;",
    "&lt;",
    "&#0;",
    '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns:ex="http://e/">',
    "</rdf:RDF>",
    '<rdf:Description rdf:about="http://e/s">',
    "</rdf:Description>",
    "<ex:p>",
    "</ex:p>",
    "text",
    '<ex:p rdf:resource="http://e/o"/>',
    'rdf:parseType="Literal"',
    "<![CDATA[",
    "]]>",
    "<!--",
    "-->",
    "<",
    ">",
]


def bodies(pieces: list[str]) -> st.SearchStrategy[bytes]:
    words = st.lists(st.one_of(st.sampled_from(pieces), st.text(max_size=8)), max_size=60)
    deep = st.builds(lambda n, w: w * n, st.integers(0, 5000), st.sampled_from(["{", "(", "[", "<a>", "! "]))
    return st.builds(
        lambda ws, d, tail: (" ".join(ws) + d + tail).encode("utf-8", "surrogatepass"),
        words,
        deep,
        st.sampled_from(["", "}", ")", " ."]),
    )


@pytest.fixture
def target(tmp_path):
    (tmp_path / "state").mkdir()
    dataset = Dataset.objects.create(name="flood", s3root=f"file://{tmp_path / 'state'}")
    server = Server.objects.create(name="web1", dataset=dataset)
    return {
        "publisher": make_caller("petra", "publisher"),
        "agent": make_caller("agent.web1", "agent", server=server),
    }


def assert_handled(response) -> None:
    assert response.status_code < 500, (response.status_code, response.content[:300])
    if response.status_code >= 400:
        body = response.json()
        assert set(body) >= {"error", "detail"}, body


def publish(client, query: str, body: bytes, media: str):
    return client.generic(
        "POST", f"/api/v1/publications/?dataset=flood&label=fuzz&{query}", body, content_type=media
    )


def test_generated_sparql_updates_never_get_a_500(target):
    @FUZZ
    @given(bodies(SPARQL_PIECES))
    def run(body):
        assert_handled(publish(target["publisher"].client, "op=update", body, "application/sparql-update"))

    run()


def test_generated_turtle_never_gets_a_500(target):
    @FUZZ
    @given(bodies(TTL_PIECES), st.sampled_from(["http://e/g", "urn:x", 'http://e/"x', "x", "http://e/%zz"]))
    def run(body, graph):
        from urllib.parse import quote

        assert_handled(
            publish(target["publisher"].client, f"op=add&graph={quote(graph)}", body, "text/turtle")
        )

    run()


def test_generated_rdfxml_never_gets_a_500(target):
    @FUZZ
    @given(bodies(XML_PIECES))
    def run(body):
        assert_handled(
            publish(target["publisher"].client, "op=replace&graph=http://e/g", body, "application/rdf+xml")
        )

    run()


times = st.one_of(
    st.none(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.builds(
        lambda y, o: f"{y:04d}-01-15T04:00:01{o}",
        st.integers(0, 9999),
        st.sampled_from(["Z", "+99:00", "-23:59", "+00:00", "", ".123456789Z"]),
    ),
    st.builds(lambda y: f"{y:04d}-12-31/23-59-59-999999999", st.integers(0, 9999)),
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
reports = st.fixed_dictionaries(
    {},
    optional={
        "effectiveDate": times,
        "lastUpdate": times,
        "lastSucceeded": json_values,
        "applied": json_values,
        "failedKey": json_values,
        "error": json_values,
        "late": json_values,
        "recent": json_values,
        "invalid": json_values,
        "lastRun": st.sampled_from(["update", "rebuild", None, 1, "x"]),
        "running": json_values,
        "skipped": json_values,
        "fingerprint": json_values,
        "store": json_values,
        "progress": json_values,
        "agentVersion": json_values,
        "hookError": json_values,
    },
)


def test_generated_status_reports_never_get_a_500(target):
    @FUZZ
    @given(st.one_of(reports, json_values))
    def run(body):
        assert_handled(target["agent"].client.post("/api/v1/servers/web1/report/", body, format="json"))

    run()
