"""The server page: status, history, update runs, and the Update now / Rebuild actions with live progress."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from audit.models import AuditEvent
from jobs.models import Job, JobKind, JobStatus
from servers.models import RunResult, Server, UpdateRun


def test_server_page_shows_state_lag_history_and_runs(viewer_client, fleet, updates, operator_user):
    server = fleet["broken"]
    now = timezone.now()
    UpdateRun.objects.create(
        server=server,
        started_at=now - timedelta(minutes=30),
        finished_at=now - timedelta(minutes=28),
        result=RunResult.FAILED,
        ops_applied=3,
        failed_key=updates[1].key,
        error="HTTP 500 from the store",
        requested_by=operator_user,
    )
    html = viewer_client.get("/servers/fuseki-3/").content.decode()
    assert ">failing<" in html and "4 updates, 4 min behind" in html
    assert f'Last run failed on <code class="key">{updates[1].key}</code>' in html
    assert "2 min" in html  # the run's duration
    assert ">3<" in html  # ops applied
    assert "by olivia" in html
    assert html.count('<td data-label="Received">') == 3  # status history rows


def test_an_unknown_server_is_an_html_404(viewer_client, fleet):
    response = viewer_client.get("/servers/nope/")
    assert response.status_code == 404 and b"Not found" in response.content and b"<html" in response.content


def test_update_now_starts_an_update_job_and_shows_its_progress(operator_client, fleet):
    response = operator_client.post("/servers/fuseki-2/update", HTTP_HX_REQUEST="true")
    job = Job.objects.get()
    assert (job.kind, job.server, job.status, job.actor) == (
        JobKind.UPDATE,
        fleet["lagging"],
        "queued",
        "olivia",
    )
    html = response.content.decode()
    assert f'hx-get="/jobs/{job.pk}/progress?compact=1"' in html and "every 1s" in html
    assert AuditEvent.objects.filter(
        action="job.update.requested", target="fuseki-2", actor="olivia"
    ).exists()
    # The server page keeps showing the job while it runs.
    assert f'id="job-{job.pk}"' in operator_client.get("/servers/fuseki-2/").content.decode()


def test_update_now_without_htmx_redirects_to_the_server_page(operator_client, fleet):
    response = operator_client.post("/servers/fuseki-2/update")
    assert response.status_code == 302 and response["Location"] == "/servers/fuseki-2/"


def test_rebuild_asks_for_confirmation_first_naming_the_image(operator_client, fleet, ui_dataset, updates):
    from django.utils import timezone

    from dmsupdate.state.keys import EffectiveTime, format_key
    from publications.models import ObjectState, StateObject

    key = format_key(EffectiveTime(updates[1].effective_ns - 1), "dmsupdate", "image", format="tgz")
    StateObject.for_key(ui_dataset, key, ObjectState.PUBLISHED, timezone.now(), size=5 * 1024 * 1024).save()
    page = operator_client.get("/servers/fuseki-2/rebuild").content.decode()
    assert "Rebuild fuseki-2?" in page and 'name="confirm"' in page
    assert f'<code class="key" id="rebuild-image">{key}</code>' in page and "5.0 MB" in page
    assert "replays the <strong>4</strong> published updates after it" in page
    response = operator_client.post("/servers/fuseki-2/rebuild", {})
    assert response.status_code == 400 and Job.objects.count() == 0
    assert Server.objects.get(name="fuseki-2").rebuild_requested_at is None


def test_a_confirmed_rebuild_starts_a_job_and_marks_the_server_rebuilding(operator_client, fleet):
    response = operator_client.post("/servers/fuseki-2/rebuild", {"confirm": "yes"})
    assert response.status_code == 302
    job = Job.objects.get()
    assert job.kind == JobKind.REBUILD and job.server.name == "fuseki-2"
    assert Server.objects.get(name="fuseki-2").rebuild_requested_at is not None
    html = operator_client.get("/").content.decode()
    assert 'id="server-fuseki-2" class="state-rebuilding"' in html


def test_the_job_progress_partial_polls_until_the_job_ends(viewer_client, fleet):
    job = Job.objects.create(
        kind=JobKind.UPDATE,
        server=fleet["lagging"],
        status=JobStatus.RUNNING,
        progress=40,
        progress_text="applying 2 of 5",
    )
    running = viewer_client.get(f"/jobs/{job.pk}/progress")
    assert b"every 1s" in running.content and b"applying 2 of 5" in running.content
    assert "HX-Trigger" not in running
    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.SUCCEEDED, progress=100, result={"summary": "2 ops applied"}
    )
    done = viewer_client.get(f"/jobs/{job.pk}/progress")
    assert b"every 1s" not in done.content and b"2 ops applied" in done.content
    assert done["HX-Trigger"] == "job-finished"


def test_the_status_block_refreshes_when_a_job_finishes(viewer_client, fleet):
    html = viewer_client.get("/servers/fuseki-2/status").content.decode()
    assert 'hx-trigger="every 5s, job-finished from:body"' in html and "<html" not in html
