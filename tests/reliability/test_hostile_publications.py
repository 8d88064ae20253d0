"""Hostile publications (DESIGN §6 rules): each is refused with a 4xx JSON error and nothing is written."""

from __future__ import annotations

import gzip
import io
from datetime import timedelta

import pytest
from django.utils import timezone

from dmsupdate.state.keys import EffectiveTime, format_key
from tests.api.fixtures import footprint

GRAPH = "http://example.org/graph/g"
LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE rdf:RDF [\n<!ENTITY l0 "ha">\n'
    + b"".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">\n'.encode() for i in range(1, 9))
    + b']>\n<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns:ex="http://e/">'
    b'<rdf:Description rdf:about="http://e/s"><ex:p>&l8;</ex:p></rdf:Description></rdf:RDF>'
)
# A DOCTYPE after the root element is honoured by the RDF/XML parser too.
LATE_DOCTYPE = (
    b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns:ex="http://e/">'
    b'<!DOCTYPE x [<!ENTITY a "zz">]><rdf:Description rdf:about="http://e/s"><ex:p>&a;</ex:p>'
    b"</rdf:Description></rdf:RDF>"
)


def raw(client, query: str, body: bytes, content_type: str):
    return client.generic("POST", f"/api/v1/publications/?{query}", body, content_type=content_type)


def update(client, text: str | bytes, gz: bool = False):
    body = text.encode() if isinstance(text, str) else text
    fmt = "&format=ru.gz" if gz else ""
    return raw(
        client,
        f"dataset=flood&op=update&label=x{fmt}",
        gzip.compress(body) if gz else body,
        "application/sparql-update",
    )


def assert_refused(response, status: int, code: str, words: str = "") -> None:
    assert response.status_code == status, response.content[:300]
    body = response.json()
    assert body["error"] == code, body
    assert words in body["detail"], body


SPARQL_CASES = {
    "LOAD of an internal URL": ("LOAD <http://169.254.169.254/latest/meta-data/>", "fetches_urls", "LOAD"),
    "LOAD after an INSERT DATA": (
        'INSERT DATA { <http://a> <http://b> "c" } ;\nload silent <http://127.0.0.1:8000/x> into graph <http://g>',
        "fetches_urls",
        "LOAD",
    ),
    "LOAD hidden behind a prefixed name's escaped quote": (
        # The engine reads `ex:o\\'` as one name; a screen that took its `'` for a string would miss the LOAD.
        "PREFIX ex: <http://example.org/> INSERT { ex:s ex:p ex:o\\' } WHERE {} ; "
        "LOAD <http://127.0.0.1:1/x> INTO GRAPH <http://g> ; INSERT { ex:s ex:p 'x' } WHERE {}",
        "fetches_urls",
        "LOAD",
    ),
    "SERVICE in a WHERE": (
        "INSERT { ?s ?p ?o } WHERE { SERVICE <http://127.0.0.1:5432/> { ?s ?p ?o } }",
        "fetches_urls",
        "SERVICE",
    ),
    "DROP ALL": ("DROP ALL", "drop_all", "DROP ALL"),
    "CLEAR SILENT DEFAULT": ("CLEAR SILENT DEFAULT", "drop_all", "DEFAULT"),
    "nesting that overflows the parser's stack": (
        "INSERT { <http://a> <http://b> 1 } WHERE { " + "{" * 10000 + "}" * 10000 + " }",
        "too_deep",
        "64",
    ),
    "a chain of terms that overflows the engine's stack": (
        "INSERT { <http://a> <http://b> ?x } WHERE { BIND(" + "+".join(["1"] * 20000) + " AS ?x) }",
        "too_long",
        "terms",
    ),
}


@pytest.mark.parametrize("case", SPARQL_CASES, ids=list(SPARQL_CASES))
@pytest.mark.django_db
def test_sparql_update_the_servers_must_not_run_is_refused(case, publisher, dataset):
    text, code, words = SPARQL_CASES[case]
    before = footprint(dataset)
    assert_refused(update(publisher.client, text), 400, code, words)
    assert footprint(dataset) == before


@pytest.mark.django_db
def test_words_like_load_inside_strings_iris_and_names_are_not_keywords(publisher, dataset):
    text = (
        "PREFIX load: <http://example.org/load#>\n# LOAD <http://x>\n"
        'INSERT DATA { load:service load:p "LOAD <http://x> SERVICE" . <http://e/LOAD> load:p ?service }'
    ).replace("?service", '"x"')
    response = update(publisher.client, text)
    assert response.status_code == 201, response.json()


@pytest.mark.django_db
def test_drop_all_is_published_where_the_dataset_allows_it(publisher, dataset):
    dataset.allow_drop_all = True
    dataset.save()
    assert update(publisher.client, "DROP SILENT ALL").status_code == 201


@pytest.mark.django_db
def test_an_update_over_its_own_limit_is_413_while_it_is_read(publisher, dataset, settings):
    # 900 MiB of whitespace compress to under a megabyte: the limit counts what comes out.
    settings.DMSUPDATE = {**settings.DMSUPDATE, "MAX_UPDATE_BYTES": 1 << 20}
    body = io.BytesIO()
    with gzip.GzipFile(fileobj=body, mode="wb", compresslevel=9) as gz:
        gz.write(b"INSERT DATA { <http://a> <http://b> 1 }")
        for _ in range(64):
            gz.write(b" " * (1 << 20))
    before = footprint(dataset)
    response = raw(
        publisher.client, "dataset=flood&op=update&label=x&format=ru.gz", body.getvalue(), "application/gzip"
    )
    assert_refused(response, 413, "too_large", "SPARQL update")
    assert footprint(dataset) == before
    plain = raw(
        publisher.client, "dataset=flood&op=update&label=x", b" " * (2 << 20), "application/sparql-update"
    )
    assert_refused(plain, 413, "too_large", "SPARQL update")
    assert footprint(dataset) == before


@pytest.mark.parametrize(
    "body",
    [LAUGHS, LATE_DOCTYPE, LAUGHS.replace(b"DOCTYPE", b"doctype")],
    ids=["billion laughs", "doctype after the root", "lower case"],
)
@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.django_db
def test_rdfxml_with_entity_declarations_is_refused(body, gz, publisher, dataset):
    before = footprint(dataset)
    query = f"dataset=flood&op=add&label=x&graph={GRAPH}" + ("&format=rdf.gz" if gz else "")
    response = raw(publisher.client, query, gzip.compress(body) if gz else body, "application/rdf+xml")
    assert_refused(response, 400, "xml_declarations", "DOCTYPE")
    assert footprint(dataset) == before


GRAPH_CASES = {
    "markup in the IRI": 'http://e/"><img src=x onerror=alert(1)>',
    "a space": "http://e/a b",
    "a relative IRI": "never-existed",
    "a bad percent-escape": "http://e/%zz",
    "the agent's ledger graph": "urn:x-dms-update:ledger",
}


@pytest.mark.parametrize("case", GRAPH_CASES, ids=list(GRAPH_CASES))
@pytest.mark.django_db
def test_graph_iris_the_agent_cannot_use_are_refused(case, publisher, dataset):
    from urllib.parse import quote

    before = footprint(dataset)
    response = raw(
        publisher.client,
        f"dataset=flood&op=drop&label=x&graph={quote(GRAPH_CASES[case])}",
        b"",
        "text/turtle",
    )
    assert_refused(response, 400, "invalid_graph", "graph")
    assert footprint(dataset) == before


def put(dataset, key: str, body: bytes) -> str:
    store = dataset.open_store()
    store.put_new(key, io.BytesIO(body), len(body))
    return store.url(key)


@pytest.mark.django_db
def test_recording_a_key_dated_far_ahead_is_refused(publisher, dataset):
    for ahead in (timedelta(minutes=6), timedelta(days=365 * 174)):
        when = EffectiveTime.from_datetime(timezone.now() + ahead)
        url = put(
            dataset, format_key(when, "x", "update", None, "ru"), b"INSERT DATA { <http://a> <http://b> 1 }"
        )
        before = footprint(dataset)
        response = publisher.client.post(
            "/api/v1/publications/", {"dataset": "flood", "s3_url": url}, format="json"
        )
        assert_refused(response, 400, "future_time", "5 minutes")
        assert footprint(dataset) == before


@pytest.mark.django_db
def test_recording_a_key_dated_after_2262_is_a_400_not_a_500(publisher, dataset):
    url = put(
        dataset, "updates/2300-01-01/00-00-00-0/x_update.ru", b"INSERT DATA { <http://a> <http://b> 1 }"
    )
    before = footprint(dataset)
    response = publisher.client.post(
        "/api/v1/publications/", {"dataset": "flood", "s3_url": url}, format="json"
    )
    assert_refused(response, 400, "invalid_key", "2262")
    assert footprint(dataset) == before


@pytest.mark.django_db
def test_recording_a_key_within_five_minutes_is_accepted(publisher, dataset):
    when = EffectiveTime.from_datetime(timezone.now() + timedelta(minutes=4))
    url = put(
        dataset, format_key(when, "x", "update", None, "ru"), b"INSERT DATA { <http://a> <http://b> 1 }"
    )
    response = publisher.client.post(
        "/api/v1/publications/", {"dataset": "flood", "s3_url": url}, format="json"
    )
    assert response.status_code == 201, response.json()


@pytest.mark.parametrize(
    "key, body, code",
    [
        ("x_update.ru", b"LOAD <http://127.0.0.1:1/>", "fetches_urls"),
        ("x_add_http:%2F%2Fe%2Fg.rdf", LAUGHS, "xml_declarations"),
        ('x_drop_http:%2F%2Fe%2F"><img', b"", "invalid_graph"),
    ],
    ids=["LOAD", "billion laughs", "bad graph"],
)
@pytest.mark.django_db
def test_recording_an_object_put_in_the_bucket_checks_it_like_an_upload(key, body, code, publisher, dataset):
    when = EffectiveTime.from_datetime(timezone.now() - timedelta(minutes=1))
    url = put(dataset, f"updates/{when.path}/{key}", body)
    before = footprint(dataset)
    response = publisher.client.post(
        "/api/v1/publications/", {"dataset": "flood", "s3_url": url}, format="json"
    )
    assert_refused(response, 400, code)
    assert footprint(dataset) == before
