"""A publisher uploads add/replace/drop/update/postproc objects through POST /api/v1/publications/."""

from __future__ import annotations

import gzip

import boto3
import pyoxigraph
import pytest

from audit.models import AuditEvent
from dmsupdate.state.keys import EffectiveTime, parse_key
from jobs.models import Job, JobKind
from publications.models import ObjectState, PublicationEvent, StateObject
from servers.models import Server
from tests.api.fixtures import stored_keys

TURTLE = b"@prefix ex: <http://example.org/> .\nex:station1 ex:level 3.2 .\nex:station2 ex:level 1.5 .\n"
NTRIPLES = b'<http://example.org/station1> <http://example.org/name> "Kew" .\n'
SPARQL = b"PREFIX ex: <http://example.org/>\nDELETE WHERE { ex:station2 ?p ?o }"
GRAPH = "http://example.org/graph/readings"


def read_object(dataset, key: str) -> bytes:
    body = dataset.open_store().open(key)
    try:
        return body.read()
    finally:
        body.close()


def publish_all(publisher, dataset) -> list[dict]:
    """Publish one object of every update op, each the way a real publisher would send it."""
    client = publisher.client
    answers = [
        client.post(
            "/api/v1/publications/",
            {
                "dataset": "flood",
                "op": "add",
                "label": "readings",
                "graph": GRAPH,
                "file": _named("readings.ttl", TURTLE),
            },
            format="multipart",
        ),
        client.generic(
            "POST",
            f"/api/v1/publications/?dataset=flood&op=replace&label=stations&graph={GRAPH}-2",
            gzip.compress(NTRIPLES),
            content_type="application/n-triples",
        ),
        client.post(f"/api/v1/publications/?dataset=flood&op=drop&label=cleanup&graph={GRAPH}-old"),
        client.generic(
            "POST",
            "/api/v1/publications/?dataset=flood&op=update&label=readings",
            SPARQL,
            content_type="application/sparql-update",
        ),
        client.generic(
            "POST",
            "/api/v1/publications/?dataset=flood&op=postproc&label=readings&component=stats.v2",
            SPARQL,
            content_type="application/sparql-update",
        ),
    ]
    for answer in answers:
        assert answer.status_code == 201, answer.content
    return [answer.json() for answer in answers]


@pytest.mark.django_db
def test_each_op_lands_under_its_key_with_registry_audit_and_one_trigger(publisher, dataset, two_servers):
    bodies = publish_all(publisher, dataset)

    keys = [b["key"] for b in bodies]
    parsed = [parse_key(k) for k in keys]
    assert [(p.op, p.label, p.arg, p.format) for p in parsed] == [
        ("add", "readings", GRAPH, "ttl"),
        ("replace", "stations", GRAPH + "-2", "nt.gz"),
        ("drop", "cleanup", GRAPH + "-old", None),
        ("update", "readings", None, "ru"),
        ("postproc", "readings", "stats.v2", "ru"),
    ]
    assert keys[0].endswith("readings_add_http:%2F%2Fexample%2Eorg%2Fgraph%2Freadings.ttl")
    assert keys[4].endswith("readings_postproc_stats%2Ev2.ru")
    times = [p.effective.nanos for p in parsed]
    assert times == sorted(times) and len(set(times)) == 5
    assert [b["effective_time"] for b in bodies] == [EffectiveTime(t).isoformat() for t in times]

    assert sorted(stored_keys(dataset)) == sorted(keys)
    assert read_object(dataset, keys[0]) == TURTLE
    assert gzip.decompress(read_object(dataset, keys[1])) == NTRIPLES
    assert read_object(dataset, keys[2]) == b""
    assert read_object(dataset, keys[3]) == SPARQL

    rows = {o.key: o for o in StateObject.objects.filter(dataset=dataset)}
    assert set(rows) == set(keys)
    assert {o.state for o in rows.values()} == {ObjectState.PUBLISHED}
    assert rows[keys[0]].size == len(TURTLE) and rows[keys[0]].sha256 == bodies[0]["sha256"]
    assert rows[keys[0]].etag  # the store's MD5 ETag, checked against what was sent
    events = PublicationEvent.objects.filter(dataset=dataset)
    assert sorted(e.key for e in events) == sorted(keys)
    assert {e.actor for e in events} == {f"petra (token {publisher.token.name})"}
    assert all(e.s3_url == f"{dataset.s3root}/{e.key}" for e in events)

    audited = AuditEvent.objects.filter(action="publication.created").order_by("id")
    assert [a.details["key"] for a in audited] == keys
    assert all(a.request_id for a in audited)
    # A burst of publications queues one update of the dataset's servers.
    assert Job.objects.filter(kind=JobKind.UPDATE_ALL, dataset=dataset).count() == 1


@pytest.mark.django_db
def test_stored_objects_replay_into_the_expected_graphs(publisher, dataset):
    """Replaying what was stored (by the DESIGN §4 rules) gives the graphs the publisher meant."""
    bodies = publish_all(publisher, dataset)
    store = pyoxigraph.Store()
    for body in sorted(bodies, key=lambda b: (b["effective_ns"], b["key"])):
        key = parse_key(body["key"])
        raw = read_object(dataset, body["key"])
        content = gzip.decompress(raw) if key.gzipped else raw
        if key.op in ("add", "replace"):
            graph = pyoxigraph.NamedNode(key.graph)
            if key.op == "replace":
                store.update(f"DROP SILENT GRAPH <{key.graph}>")
            fmt = pyoxigraph.RdfFormat.from_extension(key.rdf_format)
            store.load(content, fmt, to_graph=graph)
        elif key.op == "drop":
            store.update(f"DROP SILENT GRAPH <{key.graph}>")
        else:
            store.update(content.decode())
    readings = {
        (str(q.subject), str(q.object))
        for q in store.quads_for_pattern(None, None, None, pyoxigraph.NamedNode(GRAPH))
    }
    assert readings == {
        ("<http://example.org/station1>", '"3.2"^^<http://www.w3.org/2001/XMLSchema#decimal>'),
        ("<http://example.org/station2>", '"1.5"^^<http://www.w3.org/2001/XMLSchema#decimal>'),
    }
    stations = list(store.quads_for_pattern(None, None, None, pyoxigraph.NamedNode(GRAPH + "-2")))
    assert [str(q.object) for q in stations] == ['"Kew"']


@pytest.mark.django_db
def test_publication_detail_shows_applied_on_k_of_n(publisher, dataset, two_servers):
    body = publish_all(publisher, dataset)[0]
    web1, web2 = two_servers
    Server.objects.filter(pk=web1.pk).update(effective_ns=body["effective_ns"])
    Server.objects.filter(pk=web2.pk).update(effective_ns=body["effective_ns"] - 1)

    detail = publisher.client.get(f"/api/v1/publications/{body['id']}/").json()

    assert (detail["applied_on"], detail["servers_total"]) == (1, 2)
    assert {s["name"]: s["applied"] for s in detail["servers"]} == {"web1": True, "web2": False}
    assert detail["key"] == body["key"]


@pytest.mark.django_db
def test_format_is_inferred_from_the_file_name_and_gzip_content(publisher, dataset):
    answer = publisher.client.post(
        "/api/v1/publications/",
        {
            "dataset": "flood",
            "op": "add",
            "label": "readings",
            "graph": GRAPH,
            "file": _named("d.nt.gz", gzip.compress(NTRIPLES)),
        },
        format="multipart",
    )
    assert answer.status_code == 201, answer.content
    assert answer.json()["key"].endswith(".nt.gz")


def _named(name: str, content: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, content)


@pytest.mark.django_db
def test_recording_an_object_already_in_s3_heads_it_and_publishes_it(publisher, dataset):
    key = "updates/2026-01-02/03-04-05-123456789/readings_update.ru"
    bucket, prefix = dataset.s3root.removeprefix("s3://").split("/", 1)
    boto3.client("s3", endpoint_url=dataset.s3endpoint).put_object(
        Bucket=bucket, Key=f"{prefix}/{key}", Body=SPARQL
    )

    answer = publisher.client.post(
        "/api/v1/publications/",
        {"dataset": "flood", "s3_url": f"{dataset.s3root}/{key}", "size": len(SPARQL)},
        format="json",
    )

    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert body["key"] == key and body["uploaded"] is False
    assert body["effective_time"] == "2026-01-02T03:04:05.123456789Z"
    row = StateObject.objects.get(dataset=dataset, key=key)
    assert (row.state, row.size) == (ObjectState.PUBLISHED, len(SPARQL))
    assert AuditEvent.objects.filter(action="publication.recorded", details__key=key).exists()
    again = publisher.client.post(
        "/api/v1/publications/", {"dataset": "flood", "s3_url": f"{dataset.s3root}/{key}"}, format="json"
    )
    assert again.status_code == 409 and again.json()["error"] == "already_recorded"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("s3://elsewhere/dms/updates/2026-01-02/03-04-05-1/readings_update.ru", "outside_root"),
        ("{root}/updates/2026-01-02/03-04-05-1/read_ings_update.ru", "invalid_key"),
        ("{root}/updates/2026-01-02/notatime/readings_update.ru", "invalid_key"),
        ("{root}/updates/2026-01-02/03-04-05-1/readings_update.ru", "object_not_found"),
    ],
)
def test_recording_refuses_keys_off_layout_outside_the_root_or_missing(publisher, dataset, url, error):
    answer = publisher.client.post(
        "/api/v1/publications/",
        {"dataset": "flood", "s3_url": url.format(root=dataset.s3root)},
        format="json",
    )
    assert answer.status_code == 400, answer.content
    assert answer.json()["error"] == error
    assert not StateObject.objects.exists()


@pytest.mark.django_db
def test_raw_body_without_content_type_uses_the_format_parameter(publisher, dataset):
    answer = publisher.client.generic(
        "POST",
        f"/api/v1/publications/?dataset=flood&op=add&label=readings&graph={GRAPH}&format=nt",
        NTRIPLES,
        content_type="",
    )
    assert answer.status_code == 201, answer.content
    assert answer.json()["key"].endswith(".nt")


@pytest.mark.django_db
def test_publishing_to_a_directory_root_creates_the_file_exclusively(publisher, file_root):
    from publications.models import Dataset

    root, _ = file_root
    dataset = Dataset.objects.create(name="local", s3root=root)
    answer = publisher.client.generic(
        "POST",
        "/api/v1/publications/?dataset=local&op=update&label=feed",
        SPARQL,
        content_type="application/sparql-update",
    )
    assert answer.status_code == 201, answer.content
    key = answer.json()["key"]
    assert stored_keys(dataset) == [key]
    assert read_object(dataset, key) == SPARQL
    assert answer.json()["s3_url"] == f"{root}/{key}"


@pytest.mark.django_db
def test_publication_list_filters_and_scoped_publishers_see_only_their_datasets(
    publisher, scoped_publisher, dataset, other_dataset
):
    publish_all(publisher, dataset)
    elsewhere = publisher.client.generic(
        "POST",
        "/api/v1/publications/?dataset=rivers&op=update&label=readings",
        SPARQL,
        content_type="application/sparql-update",
    )
    assert elsewhere.status_code == 201

    everything = publisher.client.get("/api/v1/publications/").json()
    assert everything["count"] == 6
    readings = publisher.client.get(
        "/api/v1/publications/", {"dataset": "flood", "label": "readings", "op": "update"}
    ).json()
    assert [r["op"] for r in readings["results"]] == ["update"]
    scoped = scoped_publisher.client.get("/api/v1/publications/").json()
    assert scoped["count"] == 5 and {r["dataset"] for r in scoped["results"]} == {"flood"}
    hidden = scoped_publisher.client.get(f"/api/v1/publications/{elsewhere.json()['id']}/")
    assert hidden.status_code == 404
    # Nor the other dataset itself, or the objects under its root.
    objects = scoped_publisher.client.get("/api/v1/objects/").json()
    assert objects["results"] and {o["dataset"] for o in objects["results"]} == {"flood"}
    assert scoped_publisher.client.get("/api/v1/objects/", {"dataset": "rivers"}).json()["results"] == []
    datasets = scoped_publisher.client.get("/api/v1/datasets/").json()
    assert [d["name"] for d in datasets["results"]] == ["flood"]
    assert scoped_publisher.client.get("/api/v1/datasets/rivers/").status_code == 404


@pytest.mark.django_db
def test_scoped_publisher_may_not_record_an_object_with_another_label(scoped_publisher, dataset):
    key = "updates/2026-01-02/03-04-05-1/stations_update.ru"
    bucket, prefix = dataset.s3root.removeprefix("s3://").split("/", 1)
    boto3.client("s3", endpoint_url=dataset.s3endpoint).put_object(
        Bucket=bucket, Key=f"{prefix}/{key}", Body=SPARQL
    )
    answer = scoped_publisher.client.post(
        "/api/v1/publications/", {"dataset": "flood", "s3_url": f"{dataset.s3root}/{key}"}, format="json"
    )
    assert answer.status_code == 403
    assert "'stations'" in answer.json()["detail"]
    assert not StateObject.objects.exists()
    readings_key = key.replace("stations_", "readings_")
    boto3.client("s3", endpoint_url=dataset.s3endpoint).put_object(
        Bucket=bucket, Key=f"{prefix}/{readings_key}", Body=SPARQL
    )
    allowed = scoped_publisher.client.post(
        "/api/v1/publications/",
        {"dataset": "flood", "s3_url": f"{dataset.s3root}/{readings_key}"},
        format="json",
    )
    assert allowed.status_code == 201, allowed.content
