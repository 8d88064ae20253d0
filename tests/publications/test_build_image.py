"""Clean base images: a server bootstrapped from a built image answers as one that replayed everything."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import pyoxigraph as ox
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from audit.models import AuditEvent
from dmsupdate.agent.config import Config
from dmsupdate.agent.images import LEDGER_GRAPH, pack_image
from dmsupdate.agent.runner import Runner
from dmsupdate.state.keys import EffectiveTime, format_key, parse_key
from jobs.models import JobKind, JobStatus
from jobs.services import start_job
from publications.models import Dataset, ObjectState, StateObject

pytestmark = pytest.mark.django_db

EX = "http://example.org/"
BASE_TTL = f"""
<{EX}station/1> <{EX}name> "Kew" ; <{EX}level> 3 .
<{EX}station/2> <{EX}name> "Ham" ; <{EX}level> 5 .
"""

QUERIES = [
    "SELECT ?s ?p ?o ?g WHERE { { ?s ?p ?o } UNION { GRAPH ?g { ?s ?p ?o } } }",
    "SELECT ?g (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } } GROUP BY ?g",
    f"SELECT ?name WHERE {{ GRAPH ?g {{ ?s <{EX}name> ?name ; <{EX}level> ?l FILTER(?l > 2) }} }}",
    f"ASK {{ GRAPH <{EX}graph/readings> {{ ?s <{EX}value> 42 }} }}",
    f"SELECT ?s WHERE {{ GRAPH <{EX}graph/derived> {{ ?s <{EX}checked> true }} }}",
]


def at(second: int) -> EffectiveTime:
    return EffectiveTime.parse("2026-11-20", f"08-00-{second:02d}-000000000")


def publish(dataset: Dataset, store, key: str, body: bytes) -> None:
    store.put_new(key, io.BytesIO(body), len(body))
    now = timezone.now()
    StateObject.objects.create(
        dataset=dataset,
        key=key,
        size=len(body),
        first_seen=now,
        last_seen=now,
        state=ObjectState.PUBLISHED,
        **StateObject.fields_from_key(parse_key(key)),
    )


def old_image(tmp_path: Path) -> bytes:
    """A tgz of an Oxigraph store holding the base data (as an agent's image would)."""
    store_dir = tmp_path / "old-image-store"
    store = ox.Store(str(store_dir))
    store.load(
        input=BASE_TTL.encode(), format=ox.RdfFormat.TURTLE, to_graph=ox.NamedNode(f"{EX}graph/stations")
    )
    store.flush()
    del store
    import gc

    gc.collect()
    buf = io.BytesIO()
    pack_image(store_dir, buf)
    return buf.getvalue()


@pytest.fixture
def dataset(s3_root, tmp_path):
    """An old image and a history of updates using every op."""
    root, endpoint = s3_root
    dataset = Dataset.objects.create(name="flood", s3root=root, s3endpoint=endpoint)
    store = dataset.open_store()
    publish(dataset, store, format_key(at(0), "base", "image"), old_image(tmp_path))
    g = f"{EX}graph/"
    history = [
        (format_key(at(1), "readings", "add", g + "readings", "ttl"), f"<{EX}r1> <{EX}value> 41 .".encode()),
        (
            format_key(at(2), "readings", "add", g + "readings", "ttl.gz"),
            gzip.compress(f"<{EX}r2> <{EX}value> 42 .".encode()),
        ),
        (format_key(at(3), "misc", "add", g + "scratch", "nt"), f"<{EX}x> <{EX}y> <{EX}z> .".encode()),
        (
            format_key(at(4), "stations", "replace", g + "stations", "ttl"),
            f'<{EX}station/1> <{EX}name> "Kew Bridge" ; <{EX}level> 4 .'.encode(),
        ),
        (format_key(at(5), "misc", "drop", g + "scratch"), b""),
        (
            format_key(at(6), "fix", "update", format="ru"),
            f"INSERT DATA {{ GRAPH <{g}readings> {{ <{EX}r3> <{EX}value> 43 }} }}".encode(),
        ),
        (
            format_key(at(7), "derive", "postproc", "checks", "ru"),
            f"INSERT {{ GRAPH <{g}derived> {{ ?s <{EX}checked> true }} }} "
            f"WHERE {{ GRAPH <{g}readings> {{ ?s <{EX}value> ?v }} }}".encode(),
        ),
    ]
    for key, body in history:
        publish(dataset, store, key, body)
    dataset.history = history  # type: ignore[attr-defined]
    return dataset


def agent(dataset: Dataset, base: Path, name: str) -> tuple[Runner, Path]:
    config = Config.from_dict(
        {
            "s3root": dataset.s3root,
            "s3endpoint": dataset.s3endpoint,
            "dblocation": str(base / name),
            "dbname": "db",
            "logArea": str(base / name / "log"),
        }
    )
    (base / name / "log").mkdir(parents=True)
    return Runner(config), base / name / "db"


def answers(store_dir: Path) -> list:
    """Each query's results as sorted plain strings, read from a closed store."""
    store = ox.Store.read_only(str(store_dir))
    out = []
    for query in QUERIES:
        result = store.query(query)
        if isinstance(result, ox.QueryBoolean):
            out.append(bool(result))
            continue
        rows = []
        for solution in result:
            rows.append(tuple(str(solution[v]) if solution[v] is not None else "" for v in result.variables))
        out.append(sorted(r for r in rows if str(LEDGER_GRAPH) not in r))
    del store
    return out


def test_server_bootstrapped_from_built_image_answers_like_one_that_replayed_everything(dataset, tmp_path):
    replayed, replayed_db = agent(dataset, tmp_path, "replayed")
    status = replayed.rebuild()
    assert status["lastSucceeded"] is True and status["image"].endswith("base_image.tgz")

    job = start_job(JobKind.BUILD_IMAGE, dataset=dataset, actor="olivia", run_now=True)

    assert job.status == JobStatus.SUCCEEDED, job.error
    last = at(7)
    assert job.result["effective"] == last.path
    assert job.result["image"] == format_key(last, "dmsupdate", "image")
    assert job.result["dump"] == format_key(last, "dmsupdate", "dump")
    image_row = StateObject.objects.get(dataset=dataset, key=job.result["image"])
    assert (
        image_row.state == ObjectState.PUBLISHED and image_row.kind == "image" and len(image_row.sha256) == 64
    )
    assert AuditEvent.objects.get(action="image.built", target="flood").actor == "olivia"

    fresh, fresh_db = agent(dataset, tmp_path, "fresh")
    status = fresh.rebuild()
    assert status["image"] == job.result["image"] and status["effectiveDate"] == last.path
    assert status["applied"] == 1  # the image alone: nothing after it to replay

    expected = answers(replayed_db)
    assert expected[3] is True and len(expected[0]) == 8
    assert answers(fresh_db) == expected

    # The dump holds the same data quads.
    with dataset.open_store().open(job.result["dump"]) as f:
        dumped = gzip.decompress(f.read())
    store = ox.Store()
    store.load(input=dumped, format=ox.RdfFormat.N_QUADS)
    ref = ox.Store.read_only(str(replayed_db))
    data = sorted(str(q) for q in ref.quads_for_pattern(None, None, None) if q.graph_name != LEDGER_GRAPH)
    assert sorted(str(q) for q in store) == data

    # Later updates replay on top of the built image as on the long history.
    later = format_key(at(9), "readings", "add", f"{EX}graph/readings", "ttl")
    publish(dataset, dataset.open_store(), later, f"<{EX}r9> <{EX}value> 49 .".encode())
    assert replayed.update()["applied"] == 1 and fresh.update()["applied"] == 1
    assert answers(fresh_db) == answers(replayed_db)


def test_no_new_image_when_the_newest_already_includes_every_update(dataset):
    first = start_job(JobKind.BUILD_IMAGE, dataset=dataset, run_now=True)
    assert first.result["built"] is True

    again = start_job(JobKind.BUILD_IMAGE, dataset=dataset, run_now=True)

    assert again.status == JobStatus.SUCCEEDED
    assert again.result["built"] is False and "already includes every update" in again.result["summary"]
    assert StateObject.objects.filter(dataset=dataset, kind="image").count() == 3


def test_failed_replay_fails_the_job_and_publishes_nothing(dataset):
    bad = format_key(at(8), "fix", "update", format="ru")
    publish(dataset, dataset.open_store(), bad, b"THIS IS NOT SPARQL")

    job = start_job(JobKind.BUILD_IMAGE, dataset=dataset, run_now=True)

    assert job.status == JobStatus.FAILED
    assert f"replay failed at {bad}" in job.error
    assert StateObject.objects.filter(dataset=dataset, kind="image").count() == 1
    assert AuditEvent.objects.filter(action="image.failed", target="flood").exists()


def test_build_image_command_prints_the_keys_and_refuses_unknown_datasets(dataset):
    out = io.StringIO()
    call_command("build_image", "flood", stdout=out)
    assert "image: images/2026-11-20/08-00-07-000000000/dmsupdate_image.tgz" in out.getvalue()

    with pytest.raises(CommandError, match="no dataset named 'nope'"):
        call_command("build_image", "nope")
