"""Publications, objects, audit and jobs pages: filters, highlights, keyset paging, GC in two steps."""

from __future__ import annotations

from django.utils import timezone

from audit.services import record
from jobs.models import Job, JobKind, JobStatus
from publications.models import ObjectKind, ObjectState, PublicationEvent, StateObject
from servers.models import Server


def test_publications_are_newest_first_with_applied_on_k_of_n(viewer_client, fleet, updates):
    html = viewer_client.get("/publications/").content.decode()
    positions = [html.index(u.key) for u in updates]
    assert positions == sorted(positions, reverse=True)
    rows = html.split('<td data-label="Applied on"')[1:]
    # Newest first: only fuseki-1 has the last update; all three servers have the first.
    assert ">1 of 3 servers<" in rows[0]
    assert ">3 of 3 servers<" in rows[-1]


def test_applied_on_is_computed_without_a_query_per_row(
    viewer_client, fleet, ui_dataset, publish_updates, updates
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        viewer_client.get("/publications/")
    from dmsupdate.state.keys import EffectiveTime

    publish_updates(ui_dataset, 30, EffectiveTime(updates[-1].effective_ns + 1))
    with CaptureQueriesContext(connection) as many:
        viewer_client.get("/publications/")
    assert len(few.captured_queries) == len(many.captured_queries)


def test_publications_filter_by_dataset_label_op_and_date(viewer_client, fleet, updates):
    PublicationEvent.objects.filter(key=updates[0].key).update(source="cleanup", op="drop")
    html = viewer_client.get("/publications/?label=cleanup").content.decode()
    assert updates[0].key in html and updates[1].key not in html
    html = viewer_client.get("/publications/?op=drop").content.decode()
    assert updates[0].key in html and updates[1].key not in html
    today = timezone.now().date().isoformat()
    assert updates[2].key in viewer_client.get(f"/publications/?since={today}&until={today}").content.decode()
    empty = viewer_client.get("/publications/?since=2001-01-01&until=2001-01-02").content.decode()
    assert "No publication matches these filters" in empty
    assert "No publication matches" in viewer_client.get("/publications/?dataset=other").content.decode()


def test_bad_filter_values_are_ignored_not_errors(viewer_client, fleet, updates):
    keys = [u.key for u in updates]
    for query in [
        "since=yesterday",
        "until=9999-12-31",
        "before=abc",
        "before=99999999999999999999",
        "op=nuke",
    ]:
        publications = viewer_client.get(f"/publications/?{query}")
        objects = viewer_client.get(f"/objects/?{query}&state=bogus&kind=x")
        fleet_page = viewer_client.get(f"/?{query}")
        assert [publications.status_code, objects.status_code, fleet_page.status_code] == [200, 200, 200]
        # Ignored: every row shows, as without the filter.
        assert all(key in publications.content.decode() for key in keys), query
        assert all(key in objects.content.decode() for key in keys), query
        assert all(f'id="server-{s.name}"' in fleet_page.content.decode() for s in fleet.values()), query


def test_publications_page_in_pages_of_fifty(viewer_client, ui_dataset, publish_updates):
    from dmsupdate.state.keys import EffectiveTime

    objs = publish_updates(ui_dataset, 60, EffectiveTime.from_datetime(timezone.now()))
    first = viewer_client.get("/publications/").content.decode()
    assert objs[-1].key in first and objs[9].key not in first and "Older publications" in first
    next_url = first.split('<p class="pager"><a href="')[1].split('"')[0].replace("&amp;", "&")
    second = viewer_client.get(f"/publications/{next_url}").content.decode()
    assert objs[9].key in second and objs[-1].key not in second and "Older publications" not in second


def test_empty_publications_page_says_how_to_publish(viewer_client, db):
    assert "POST /api/v1/publications/" in viewer_client.get("/publications/").content.decode()


def test_objects_page_highlights_invalid_missing_and_late_objects(viewer_client, fleet, ui_dataset, updates):
    now = timezone.now()
    StateObject.objects.create(
        dataset=ui_dataset,
        key="updates/junk.txt",
        kind=ObjectKind.OTHER,
        state=ObjectState.INVALID,
        error="not a state key",
        first_seen=now,
        last_seen=now,
    )
    StateObject.objects.filter(pk=updates[1].pk).update(state=ObjectState.MISSING)
    Server.objects.filter(name="fuseki-3").update(late_keys=[updates[3].key])
    html = viewer_client.get("/objects/").content.decode()
    assert html.count('class="problem-row"') == 3
    assert "not a state key" in html and ">late<" in html
    problems = viewer_client.get("/objects/?state=problems").content.decode()
    assert "updates/junk.txt" in problems and updates[1].key in problems and updates[2].key not in problems
    late = viewer_client.get("/objects/?state=late").content.decode()
    assert updates[3].key in late and updates[2].key not in late
    missing = viewer_client.get("/objects/?state=missing").content.decode()
    assert updates[1].key in missing and "updates/junk.txt" not in missing


def test_objects_page_pages_by_key_set_without_counting(viewer_client, ui_dataset, publish_updates):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from dmsupdate.state.keys import EffectiveTime

    objs = publish_updates(ui_dataset, 55, EffectiveTime.from_datetime(timezone.now()))
    with CaptureQueriesContext(connection) as ctx:
        first = viewer_client.get("/objects/").content.decode()
    assert not any("COUNT(" in q["sql"].upper() for q in ctx.captured_queries)
    assert not any("OFFSET" in q["sql"].upper() for q in ctx.captured_queries)
    assert objs[-1].key in first and objs[0].key not in first
    second = viewer_client.get(f"/objects/?before={objs[5].pk}").content.decode()
    assert objs[0].key in second and "Older objects" not in second


def test_audit_page_filters_by_actor_action_target_and_date(operator_client, fleet):
    record("olivia", "job.update.requested", "fuseki-2", {"job": 1})
    record("anonymous", "login.failed", "mallory", {"ip": "127.0.0.1"})
    html = operator_client.get("/audit/").content.decode()
    assert "job.update.requested" in html and "login.failed" in html
    only = operator_client.get("/audit/?action=login.").content.decode()
    assert "mallory" in only and "fuseki-2" not in only
    assert "fuseki-2" in operator_client.get("/audit/?actor=olivia").content.decode()
    assert "mallory" not in operator_client.get("/audit/?target=fuseki-2").content.decode()
    today = timezone.now().date().isoformat()
    assert "mallory" in operator_client.get(f"/audit/?since={today}").content.decode()
    assert "No event matches" in operator_client.get("/audit/?until=2001-01-01").content.decode()
    nul = operator_client.get("/audit/?actor=%00&target=%00&action=%00")
    assert nul.status_code == 200 and "job.update.requested" in nul.content.decode()


def test_jobs_page_lists_running_and_recent_jobs_with_progress(viewer_client, fleet):
    Job.objects.create(
        kind=JobKind.UPDATE,
        server=fleet["lagging"],
        status=JobStatus.RUNNING,
        progress=30,
        progress_text="applying 1 of 3",
    )
    Job.objects.create(
        kind=JobKind.GC,
        dataset=fleet["lagging"].dataset,
        status=JobStatus.FAILED,
        error="store unavailable",
        finished_at=timezone.now(),
        started_at=timezone.now(),
    )
    html = viewer_client.get("/jobs/").content.decode()
    running, recent = html.split("<h2>Recent</h2>")
    assert "applying 1 of 3" in running and 'value="30"' in running
    assert "store unavailable" in recent and ">failed<" in recent


def test_jobs_page_empty_state(viewer_client, db):
    assert "Nothing is running" in viewer_client.get("/jobs/").content.decode()


def test_gc_starts_with_a_dry_run_and_the_real_gc_needs_its_confirmation(operator_client, ui_dataset):
    response = operator_client.post("/jobs/gc/", {"dataset": ui_dataset.pk})
    dry = Job.objects.get()
    assert response["Location"] == f"/jobs/{dry.pk}/"
    assert (dry.kind, dry.params) == (JobKind.GC, {"dry_run": True})
    # Not offered until the dry run has succeeded.
    assert "Run the real GC?" not in operator_client.get(f"/jobs/{dry.pk}/").content.decode()
    refused = operator_client.post(
        "/jobs/gc/", {"dataset": ui_dataset.pk, "dry_run_job": dry.pk, "confirm": "yes"}
    )
    assert refused.status_code == 400 and Job.objects.count() == 1
    Job.objects.filter(pk=dry.pk).update(
        status=JobStatus.SUCCEEDED, result={"summary": "would delete 12 objects", "delete": ["updates/a"]}
    )
    page = operator_client.get(f"/jobs/{dry.pk}/").content.decode()
    assert "would delete 12 objects" in page and "Run the real GC?" in page and "updates/a" in page
    unconfirmed = operator_client.post("/jobs/gc/", {"dataset": ui_dataset.pk, "dry_run_job": dry.pk})
    assert unconfirmed.status_code == 400 and Job.objects.count() == 1
    operator_client.post("/jobs/gc/", {"dataset": ui_dataset.pk, "dry_run_job": dry.pk, "confirm": "yes"})
    real = Job.objects.exclude(pk=dry.pk).get()
    assert real.kind == JobKind.GC and real.params["dry_run"] is False


def test_gc_confirmation_must_name_a_dry_run_of_the_same_dataset(operator_client, ui_dataset):
    from publications.models import Dataset

    other = Dataset.objects.create(name="other", s3root="file:///elsewhere")
    dry = Job.objects.create(
        kind=JobKind.GC, dataset=other, params={"dry_run": True}, status=JobStatus.SUCCEEDED
    )
    response = operator_client.post(
        "/jobs/gc/", {"dataset": ui_dataset.pk, "dry_run_job": dry.pk, "confirm": "yes"}
    )
    assert response.status_code == 400 and Job.objects.count() == 1
    bogus = operator_client.post(
        "/jobs/gc/", {"dataset": ui_dataset.pk, "dry_run_job": "x", "confirm": "yes"}
    )
    assert bogus.status_code == 400
    assert operator_client.post("/jobs/gc/", {"dataset": "nope"}).status_code == 404


def test_build_image_starts_a_job_and_shows_it(operator_client, ui_dataset):
    response = operator_client.post("/jobs/build-image/", {"dataset": ui_dataset.pk})
    job = Job.objects.get()
    assert job.kind == JobKind.BUILD_IMAGE and job.dataset == ui_dataset
    page = operator_client.get(response["Location"]).content.decode()
    assert f"Build image job #{job.pk}" in page
    assert "Waiting for a worker" in page


def test_objects_by_key_prefix_are_listed_by_key_within_a_dataset(viewer_client, ui_dataset, publish_updates):
    from dmsupdate.state.keys import EffectiveTime
    from publications.models import Dataset

    objs = publish_updates(ui_dataset, 55, EffectiveTime.from_datetime(timezone.now()))
    prefix = objs[0].key.split("/")[0] + "/"
    first = viewer_client.get(f"/objects/?prefix={prefix}").content.decode()  # the only dataset is implied
    assert objs[-1].key in first and objs[0].key not in first
    next_url = first.split('<p class="pager"><a href="')[1].split('"')[0].replace("&amp;", "&")
    second = viewer_client.get(f"/objects/{next_url}").content.decode()
    assert objs[0].key in second and objs[-1].key not in second
    Dataset.objects.create(name="other", s3root="file:///elsewhere")
    ambiguous = viewer_client.get(f"/objects/?prefix={prefix}").content.decode()
    assert "Choose a dataset to search keys by prefix" in ambiguous
    assert objs[-1].key in viewer_client.get(f"/objects/?prefix={prefix}&dataset=flood").content.decode()
