"""Bad publications get the right 4xx JSON error and leave S3, the registry and the audit log untouched."""

from __future__ import annotations

import gzip

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from tests.api.fixtures import footprint

GRAPH = "http://example.org/graph/g"
GOOD_TTL = b"<http://example.org/a> <http://example.org/b> <http://example.org/c> .\n"


def raw(client, query: str, body: bytes, content_type: str):
    return client.generic("POST", f"/api/v1/publications/?{query}", body, content_type=content_type)


CASES = {
    "malformed turtle": (
        lambda c: raw(
            c,
            f"dataset=flood&op=add&label=x&graph={GRAPH}",
            GOOD_TTL + b"<http://a> <http://b> oops .\n",
            "text/turtle",
        ),
        400,
        "invalid_rdf",
        "line 2",
    ),
    "malformed rdf/xml": (
        lambda c: raw(
            c,
            f"dataset=flood&op=add&label=x&graph={GRAPH}",
            b"<rdf:RDF xmlns:rdf='x'><unclosed",
            "application/rdf+xml",
        ),
        400,
        "invalid_rdf",
        "",
    ),
    "bad sparql": (
        lambda c: raw(
            c,
            "dataset=flood&op=update&label=x",
            b"PREFIX ex: <http://e/>\nINSERT DATA { ex:a ex:b }",
            "application/sparql-update",
        ),
        400,
        "invalid_sparql",
        "line 2",
    ),
    "label with underscore": (
        lambda c: raw(c, f"dataset=flood&op=add&label=my_label&graph={GRAPH}", GOOD_TTL, "text/turtle"),
        400,
        "invalid_label",
        "no '_' or '/'",
    ),
    "label with slash": (
        lambda c: raw(c, f"dataset=flood&op=add&label=a/b&graph={GRAPH}", GOOD_TTL, "text/turtle"),
        400,
        "invalid_label",
        "",
    ),
    "unknown op": (
        lambda c: raw(c, "dataset=flood&op=merge&label=x", GOOD_TTL, "text/turtle"),
        400,
        "invalid_op",
        "merge",
    ),
    "graph op without graph": (
        lambda c: raw(c, "dataset=flood&op=replace&label=x", GOOD_TTL, "text/turtle"),
        400,
        "invalid_key",
        "graph",
    ),
    "graph that is no IRI": (
        lambda c: raw(c, "dataset=flood&op=add&label=x&graph=not%20an%20iri", GOOD_TTL, "text/turtle"),
        400,
        "invalid_graph",
        "",
    ),
    "drop with a body": (
        lambda c: raw(c, f"dataset=flood&op=drop&label=x&graph={GRAPH}", GOOD_TTL, "text/turtle"),
        400,
        "unexpected_body",
        "",
    ),
    "add without a body": (
        lambda c: c.post(f"/api/v1/publications/?dataset=flood&op=add&label=x&graph={GRAPH}&format=ttl"),
        400,
        "missing_body",
        "",
    ),
    "unknown dataset": (
        lambda c: raw(c, f"dataset=nowhere&op=add&label=x&graph={GRAPH}", GOOD_TTL, "text/turtle"),
        400,
        "unknown_dataset",
        "",
    ),
    "damaged gzip": (
        lambda c: raw(
            c,
            f"dataset=flood&op=add&label=x&graph={GRAPH}&format=ttl.gz",
            gzip.compress(GOOD_TTL)[:-12],
            "application/gzip",
        ),
        400,
        "invalid_gzip",
        "",
    ),
    "gzip bomb": (
        lambda c: raw(
            c,
            f"dataset=flood&op=add&label=x&graph={GRAPH}&format=nt.gz",
            gzip.compress(b"\n" * 3_000_000),
            "application/gzip",
        ),
        413,
        "too_large",
        "expands",
    ),
    "oversized raw body": (
        lambda c: raw(c, f"dataset=flood&op=add&label=x&graph={GRAPH}", GOOD_TTL * 2000, "text/turtle"),
        413,
        "too_large",
        "",
    ),
    "body just over the limit": (
        lambda c: raw(c, f"dataset=flood&op=add&label=x&graph={GRAPH}", GOOD_TTL * 1000, "text/turtle"),
        413,
        "too_large",
        "",
    ),
    "oversized multipart file": (
        lambda c: c.post(
            "/api/v1/publications/",
            {
                "dataset": "flood",
                "op": "add",
                "label": "x",
                "graph": GRAPH,
                "file": SimpleUploadedFile("a.ttl", GOOD_TTL * 2000),
            },
            format="multipart",
        ),
        413,
        "too_large",
        "",
    ),
}


@pytest.fixture
def small_limits(settings):
    """Limits small enough to hit with test-sized bodies: 64 KiB uploads, 1 MiB decompressed."""
    settings.DMSUPDATE = {
        **settings.DMSUPDATE,
        "MAX_UPLOAD_BYTES": 64 * 1024,
        "MAX_DECOMPRESSED_BYTES": 1 << 20,
    }


@pytest.mark.django_db
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_publication_is_refused_and_changes_nothing(case, publisher, dataset, small_limits):
    send, status, error, words = CASES[case]
    before = footprint(dataset)

    answer = send(publisher.client)

    assert answer.status_code == status, answer.content
    body = answer.json()
    assert body["error"] == error
    assert words in body["detail"]
    assert footprint(dataset) == before


@pytest.mark.django_db
def test_wrong_token_is_401_and_changes_nothing(dataset):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token dms_not-a-real-key")
    before = footprint(dataset)
    answer = raw(client, f"dataset=flood&op=add&label=x&graph={GRAPH}", GOOD_TTL, "text/turtle")
    assert answer.status_code == 401
    assert answer.json()["error"] == "unauthenticated"
    assert footprint(dataset) == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "words"),
    [
        (f"dataset=rivers&op=add&label=readings&graph={GRAPH}", "dataset 'rivers'"),
        (f"dataset=flood&op=add&label=stations&graph={GRAPH}", "'stations'"),
    ],
)
def test_publisher_outside_its_scope_is_403_and_changes_nothing(
    scoped_publisher, dataset, other_dataset, query, words
):
    before = footprint(dataset), footprint(other_dataset)
    answer = raw(scoped_publisher.client, query, GOOD_TTL, "text/turtle")
    assert answer.status_code == 403
    assert answer.json()["error"] == "forbidden"
    assert words in answer.json()["detail"]
    assert (footprint(dataset), footprint(other_dataset)) == before


@pytest.mark.django_db
def test_scoped_publisher_may_publish_within_its_scope(scoped_publisher, dataset):
    answer = raw(
        scoped_publisher.client, f"dataset=flood&op=add&label=readings&graph={GRAPH}", GOOD_TTL, "text/turtle"
    )
    assert answer.status_code == 201, answer.content


@pytest.mark.django_db
def test_viewer_may_not_publish(viewer, dataset):
    before = footprint(dataset)
    answer = raw(viewer.client, f"dataset=flood&op=add&label=x&graph={GRAPH}", GOOD_TTL, "text/turtle")
    assert answer.status_code == 403
    assert footprint(dataset) == before
