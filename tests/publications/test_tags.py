"""Tags (DESIGN §6, seed 004): given when publishing, date tags on every object, and the three filters."""

from __future__ import annotations

import io

import pytest
from django.db import connection
from django.utils import timezone

from accounts.models import Role
from dmsupdate.state.keys import EffectiveTime, format_key
from publications.models import Dataset, ObjectState, PublicationEvent, StateObject
from publications.sync import sync_dataset
from publications.tags import date_tags
from tests.api.fixtures import footprint, make_caller

TURTLE = b"@prefix ex: <http://example.org/> .\nex:a ex:b 1 .\n"
GRAPH = "http://example.org/graph/g"


def upload(caller, tags, label="readings", **extra):
    params = {"dataset": "flood", "op": "add", "label": label, "graph": GRAPH, **extra}
    if tags is not None:
        params["tags"] = tags
    file = io.BytesIO(TURTLE)
    file.name = "a.ttl"
    return caller.client.post("/api/v1/publications/", {**params, "file": file}, format="multipart")


def test_date_tags_name_the_hour_day_iso_week_and_month():
    nanos = EffectiveTime.parse_text("2026-12-01T09:15:00Z").nanos
    assert date_tags(nanos) == ["day:2026-12-01", "hour:2026-12-01T09", "month:2026-12", "week:2026-W49"]
    # 1 January 2027 is a Friday: ISO week 53 of 2026, whatever the calendar year says.
    new_year = EffectiveTime.parse_text("2027-01-01T00:00:00Z").nanos
    assert "week:2026-W53" in date_tags(new_year)
    assert "month:2027-01" in date_tags(new_year)


def test_tags_given_by_form_query_string_and_json_land_on_the_publication_and_its_object(publisher, dataset):
    form = upload(publisher, "flood-alert, river.thames")
    assert form.status_code == 201, form.content
    raw = publisher.client.generic(
        "POST",
        f"/api/v1/publications/?dataset=flood&op=add&label=readings&graph={GRAPH}&tags=gauge",
        TURTLE,
        content_type="text/turtle",
    )
    assert raw.status_code == 201, raw.content
    event = PublicationEvent.objects.get(pk=form.json()["id"])
    day = f"day:{event.effective_at:%Y-%m-%d}"
    assert {"flood-alert", "river.thames", day} <= set(form.json()["tags"])
    assert set(event.object.tags) == set(event.tags)
    assert {"gauge", day} <= set(raw.json()["tags"])
    # JSON: record an object the publisher put there itself, with a list of tags.
    store = dataset.open_store()
    key = format_key(EffectiveTime.now(), "readings", "add", GRAPH, "ttl")
    store.put_new(key, io.BytesIO(TURTLE), len(TURTLE))
    recorded = publisher.client.post(
        "/api/v1/publications/",
        {"dataset": "flood", "s3_url": store.url(key), "tags": ["external", "gauge"]},
        format="json",
    )
    assert recorded.status_code == 201, recorded.content
    assert {"external", "gauge"} <= set(StateObject.objects.get(key=key).tags)


@pytest.mark.parametrize(
    "tags", ["Upper", "bad tag", "-dash", "x" * 65, "day:2026-12-01", "a,,b;c"], ids=lambda t: t[:12]
)
def test_a_wrong_tag_is_refused_with_400_json_and_nothing_written(publisher, dataset, tags):
    before = footprint(dataset)
    answer = upload(publisher, tags)
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_tags"
    assert footprint(dataset) == before


def test_a_wrong_json_tags_value_is_refused(publisher, dataset):
    answer = publisher.client.post(
        "/api/v1/publications/", {"dataset": "flood", "s3_url": "s3://x/y", "tags": {"a": 1}}, format="json"
    )
    assert answer.status_code == 400


def register(dataset: Dataset, when: str, tags: list[str], n: int = 0) -> StateObject:
    eff = EffectiveTime(EffectiveTime.parse_text(when).nanos + n)
    key = format_key(eff, "feed", "update", None, "ru")
    obj = StateObject.for_key(dataset, key, ObjectState.PUBLISHED, timezone.now())
    obj.tags = sorted(set(obj.tags) | set(tags))
    obj.save()
    return obj


@pytest.fixture
def tagged_registry(dataset):
    return {
        "a": register(dataset, "2026-12-01T09:00:00Z", ["red", "big"]),
        "b": register(dataset, "2026-12-01T10:00:00Z", ["red"]),
        "c": register(dataset, "2026-12-02T09:00:00Z", ["blue", "big"]),
        "d": register(dataset, "2026-12-09T09:00:00Z", []),
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"tags_any": "red,blue"}, "abc"),
        ({"tags_all": "red,big"}, "a"),
        ({"tags_exclude": "red"}, "cd"),
        ({"tags_all": "day:2026-12-01"}, "ab"),
        ({"tags_all": "day:2026-12-01,big"}, "a"),
        ({"tags_any": "week:2026-W49", "tags_exclude": "big"}, "b"),
        ({"tags_any": "big,blue", "tags_all": "red", "tags_exclude": "hour:2026-12-01T10"}, "a"),
        ({"tags_all": "month:2026-12", "tags_exclude": "red,blue"}, "d"),
    ],
)
def test_objects_filter_by_any_all_and_exclude_in_any_combination(viewer, tagged_registry, query, expected):
    answer = viewer.client.get("/api/v1/objects/", {"dataset": "flood", **query})
    assert answer.status_code == 200, answer.content
    keys = [row["key"] for row in answer.json()["results"]]
    assert keys == sorted(tagged_registry[name].key for name in expected)


def test_a_wrong_filter_tag_is_a_400_json(viewer, tagged_registry):
    for path in ("/api/v1/objects/", "/api/v1/publications/"):
        answer = viewer.client.get(path, {"tags_all": "Not A Tag"})
        assert answer.status_code == 400
        assert answer.json()["error"] == "invalid_filter"


def test_publications_filter_by_tags(publisher, viewer, dataset):
    red = upload(publisher, "red,big").json()
    blue = upload(publisher, "blue").json()
    ids = lambda q: {r["id"] for r in viewer.client.get("/api/v1/publications/", q).json()["results"]}  # noqa: E731
    assert ids({"tags_any": "red,blue"}) == {red["id"], blue["id"]}
    assert ids({"tags_all": "red,big"}) == {red["id"]}
    assert ids({"tags_exclude": "big"}) == {blue["id"]}
    day = next(t for t in blue["tags"] if t.startswith("day:"))
    assert ids({"tags_all": f"{day},blue"}) == {blue["id"]}


def test_a_publisher_scoped_to_labels_tags_only_its_own_publications(publisher, scoped_publisher, dataset):
    own = upload(scoped_publisher, "first").json()
    others = upload(publisher, "theirs", label="stations").json()
    changed = scoped_publisher.client.put(
        f"/api/v1/publications/{own['id']}/tags/", {"tags": ["second"]}, format="json"
    )
    assert changed.status_code == 200, changed.content
    assert "second" in changed.json()["tags"] and "first" not in changed.json()["tags"]
    obj = StateObject.objects.get(key=own["key"])
    assert "second" in obj.tags and "first" not in obj.tags
    assert any(t.startswith("day:") for t in obj.tags)
    refused = scoped_publisher.client.put(
        f"/api/v1/publications/{others['id']}/tags/", {"tags": ["mine"]}, format="json"
    )
    assert refused.status_code == 403
    assert "mine" not in StateObject.objects.get(key=others["key"]).tags
    viewer = make_caller("vic", Role.VIEWER)
    assert (
        viewer.client.put(f"/api/v1/publications/{own['id']}/tags/", {"tags": []}, format="json").status_code
        == 403
    )
    bad = scoped_publisher.client.put(
        f"/api/v1/publications/{own['id']}/tags/", {"tags": ["No"]}, format="json"
    )
    assert bad.status_code == 400


def test_objects_found_by_sync_state_carry_their_date_tags(db, any_root):
    root, endpoint = any_root
    dataset = Dataset.objects.create(name="synced", s3root=root, s3endpoint=endpoint or "")
    store = dataset.open_store()
    eff = EffectiveTime.parse_text("2026-12-01T09:30:00Z")
    key = format_key(eff, "feed", "update", None, "ru")
    store.put_new(key, io.BytesIO(b"CLEAR DEFAULT"), 13)
    store.put_new("updates/not-a-key", io.BytesIO(b"x"), 1)
    sync_dataset(dataset)
    sync_dataset(dataset, full=True)
    assert StateObject.objects.get(dataset=dataset, key=key).tags == sorted(date_tags(eff.nanos))
    assert StateObject.objects.get(dataset=dataset, key="updates/not-a-key").tags == []


def test_the_planner_answers_tag_filters_from_the_gin_index(dataset):
    assert connection.vendor == "postgresql"
    register(dataset, "2026-12-01T09:00:00Z", ["red"])
    rows = StateObject.objects.filter(tags__has_all=["red", "day:2026-12-01"])
    anyof = StateObject.objects.filter(tags__has_any=["red", "blue"])
    with connection.cursor() as cur:
        cur.execute("SET LOCAL enable_seqscan = off")
        plans = [q.explain() for q in (rows, anyof)]
    for plan in plans:
        assert "object_tags_gin" in plan, plan
    assert list(rows) and list(anyof)


def test_a_page_of_few_tagged_matches_is_sorted_rather_than_walked(viewer, tagged_registry):
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as seen:
        answer = viewer.client.get("/api/v1/objects/", {"dataset": "flood", "tags_all": "red,big"})
    assert [row["key"] for row in answer.json()["results"]] == [tagged_registry["a"].key]
    page = [q["sql"] for q in seen.captured_queries if "ORDER BY" in q["sql"] and "LIMIT" in q["sql"]]
    assert page and '("publications_stateobject"."dataset_id" + 0)' in page[-1]
    with CaptureQueriesContext(connection) as walked:
        viewer.client.get("/api/v1/objects/", {"dataset": "flood", "kind": "update"})
    assert all("+ 0)" not in q["sql"] for q in walked.captured_queries)


def test_with_a_tag_filter_the_count_is_exact_up_to_a_thousand(viewer, dataset):
    base = EffectiveTime.parse_text("2026-12-01T09:00:00Z").nanos
    now = timezone.now()
    rows = []
    for n in range(1001):
        row = StateObject.for_key(
            dataset,
            format_key(EffectiveTime(base + n), "feed", "update", None, "ru"),
            ObjectState.PUBLISHED,
            now,
        )
        row.tags = sorted([*row.tags, "many"])
        rows.append(row)
    StateObject.objects.bulk_create(rows)
    tagged = viewer.client.get("/api/v1/objects/", {"dataset": "flood", "tags_all": "many"}).json()
    assert tagged["count"] is None and tagged["count_more_than"] == 1000 and tagged["next"]
    assert viewer.client.get("/api/v1/objects/", {"dataset": "flood"}).json()["count"] == 1001
