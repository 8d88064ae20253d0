"""Actions where the admin looks: update all, several servers at once (with a confirmation), and the pages they lead to."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from jobs.models import Job, JobKind, JobStatus
from publications.models import PublicationEvent
from servers.models import Server, StatusReport, UpdateRun


def test_update_all_from_the_fleet_page_starts_a_job_and_shows_it(operator_client, fleet):
    page = operator_client.get("/").content.decode()
    assert 'action="/datasets/flood/update-all"' in page and "GC (dry run first)" in page

    response = operator_client.post("/datasets/flood/update-all", HTTP_HX_REQUEST="true")

    job = Job.objects.get()
    assert (job.kind, job.dataset.name, job.actor) == (JobKind.UPDATE_ALL, "flood", "olivia")
    assert f'hx-get="/jobs/{job.pk}/progress?compact=1"' in response.content.decode()
    # The fleet page (and its polled table) keep showing the dataset's job.
    assert f'id="job-{job.pk}"' in operator_client.get("/fleet/rows").content.decode()


def test_viewers_see_no_actions_and_cannot_post_them(viewer_client, fleet):
    page = viewer_client.get("/").content.decode()
    assert "Update all" not in page and 'class="pick"' not in page
    assert viewer_client.post("/datasets/flood/update-all").status_code == 403
    assert (
        viewer_client.post("/fleet/actions", {"action": "disable", "servers": ["fuseki-1"]}).status_code
        == 403
    )
    assert Job.objects.count() == 0 and Server.objects.filter(enabled=False).count() == 0


def test_disabling_two_servers_asks_first_then_disables_them_and_audits_it(operator_client, fleet):
    chosen = {"action": "disable", "servers": ["fuseki-1", "fuseki-2"]}

    asked = operator_client.post("/fleet/actions", chosen).content.decode()
    assert "Disable 2 servers?" in asked and "left out of <em>Update all</em>" in asked
    assert Server.objects.filter(enabled=False).count() == 0

    done = operator_client.post("/fleet/actions", {**chosen, "confirm": "yes"})
    assert done.status_code == 302
    assert set(Server.objects.filter(enabled=False).values_list("name", flat=True)) == {
        "fuseki-1",
        "fuseki-2",
    }
    event = AuditEvent.objects.get(action="server.disabled")
    assert event.details == {"servers": ["fuseki-1", "fuseki-2"]} and event.actor == "olivia"
    fleet_page = operator_client.get("/").content.decode()
    assert "Disabled fuseki-1, fuseki-2." in fleet_page

    operator_client.post("/fleet/actions", {"action": "enable", "servers": ["fuseki-1"], "confirm": "yes"})
    assert set(Server.objects.filter(enabled=False).values_list("name", flat=True)) == {"fuseki-2"}


def test_an_unconfirmed_action_changes_nothing_and_says_why(operator_client, fleet):
    response = operator_client.post(
        "/fleet/actions", {"action": "disable", "servers": ["fuseki-1"], "confirm": "no"}
    )
    assert response.status_code == 400 and Server.objects.filter(enabled=False).count() == 0
    nothing = operator_client.post("/fleet/actions", {"action": "explode", "servers": ["fuseki-1"]})
    assert nothing.status_code == 302 and Job.objects.count() == 0


def test_updating_two_servers_is_one_job_over_both(operator_client, fleet):
    Server.objects.filter(name="fuseki-3").update(enabled=False)
    chosen = {"action": "update", "servers": ["fuseki-2", "fuseki-3", "fuseki-1"], "confirm": "yes"}

    response = operator_client.post("/fleet/actions", chosen)

    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    assert job.kind == JobKind.UPDATE and job.server is None and job.dataset.name == "flood"
    assert job.params["names"] == ["fuseki-1", "fuseki-2"]  # the disabled one is left out
    from servers.jobs import servers_for

    assert [s.name for s in servers_for(job)] == ["fuseki-1", "fuseki-2"]


def test_rebuilding_several_servers_marks_them_rebuilding_at_once(operator_client, fleet):
    chosen = {"action": "rebuild", "servers": ["fuseki-1", "fuseki-2"]}
    asked = operator_client.post("/fleet/actions", chosen).content.decode()
    assert "Rebuild 2 servers?" in asked and "no image or dump" in asked

    operator_client.post("/fleet/actions", {**chosen, "confirm": "yes"})

    assert Job.objects.get().kind == JobKind.REBUILD
    assert Server.objects.filter(rebuild_requested_at__isnull=False).count() == 2


def test_the_fleet_is_searched_sorted_and_paged(viewer_client, ui_dataset, updates, add_server, monkeypatch):
    import servers.dashboard

    monkeypatch.setattr(servers.dashboard, "SECTION_ROWS", 2)
    for i, index in enumerate([4, 0, 2]):
        add_server(ui_dataset, f"node-{i}", updates[index].effective_ns)
    add_server(ui_dataset, "other", updates[4].effective_ns)

    found = viewer_client.get("/fleet/rows?q=node").content.decode()
    assert "server-node-0" in found and "server-node-1" in found and "server-other" not in found
    assert "Servers 1–2 of 3 matching “node”" in found and "page=2" in found

    by_lag = viewer_client.get("/?sort=lag").content.decode()
    assert by_lag.index("server-node-1") < by_lag.index("server-node-2")  # 4 behind before 2 behind
    second = viewer_client.get("/?dataset=flood&sort=lag&page=2").content.decode()
    assert "server-node-1" not in second and "Servers 3–4 of 4" in second


def test_the_overview_shares_its_rows_among_datasets_and_links_to_the_rest(
    viewer_client, ui_dataset, updates, add_server, publish_updates, monkeypatch
):
    import servers.dashboard
    from dmsupdate.state.keys import EffectiveTime
    from publications.models import Dataset

    monkeypatch.setattr(servers.dashboard, "SECTION_ROWS", 3)
    monkeypatch.setattr(servers.dashboard, "PAGE_ROWS", 4)
    monkeypatch.setattr(servers.dashboard, "MIN_SECTION_ROWS", 1)
    other = Dataset.objects.create(name="other", s3root="file:///nowhere")
    publish_updates(other, 2, EffectiveTime(updates[0].effective_ns))
    for i in range(5):
        add_server(ui_dataset, f"flood-{i}", updates[-1].effective_ns)
        add_server(other, f"other-{i}", updates[0].effective_ns)

    overview = viewer_client.get("/").content.decode()
    assert overview.count('id="server-flood-') == 2 and overview.count('id="server-other-') == 2
    assert "Servers 1–2 of 5." in overview
    # The dataset's own view holds the first row not shown (the third) on its page 1.
    assert '<a href="?dataset=flood&amp;page=1&amp;sort=name">more of flood →</a>' in overview

    own = viewer_client.get("/?dataset=flood").content.decode()
    assert own.count('id="server-flood-') == 3 and "Servers 1–3 of 5." in own
    assert '<a href="?dataset=flood&amp;page=2&amp;sort=name">next page →</a>' in own
    second = viewer_client.get("/?dataset=flood&page=2").content.decode()
    assert "server-flood-3" in second and "server-flood-4" in second and "server-flood-2" not in second


def test_the_job_page_shows_a_table_per_server_and_never_raw_json(viewer_client, fleet):
    now = timezone.now()
    job = Job.objects.create(
        kind=JobKind.UPDATE_ALL,
        dataset=fleet["fresh"].dataset,
        status=JobStatus.SUCCEEDED,
        started_at=now - timedelta(seconds=5),
        finished_at=now,
        result={
            "summary": "1 ok",
            "servers": {
                "fuseki-1": {
                    "result": "ok",
                    "ops_applied": 12,
                    "skipped": [{"key": "updates/k1", "reason": "superseded by a later postproc"}],
                    "skipped_count": 1,
                    "duration_seconds": 12.0,
                }
            },
        },
    )
    gc = Job.objects.create(
        kind=JobKind.GC,
        status=JobStatus.SUCCEEDED,
        finished_at=now,
        result={
            "summary": "0 deleted",
            "datasets": {"flood": {"delete": ["updates/a", "updates/b"], "dry_run": True}},
        },
    )

    html = viewer_client.get(f"/jobs/{job.pk}/").content.decode()
    assert 'id="job-server-fuseki-1"' in html and "updates/k1</code>: superseded by a later postproc" in html
    assert "1 skipped" in html and "12 s" in html and "Took" in html
    gc_html = viewer_client.get(f"/jobs/{gc.pk}/").content.decode()
    assert (
        "<li>updates/a</li>" in gc_html
        and '"delete"' not in gc_html
        and "{" not in gc_html.split("<main>")[1]
    )


def test_the_publication_page_says_where_it_was_applied(viewer_client, fleet, updates):
    event = PublicationEvent.objects.get(key=updates[3].key)
    StatusReport.objects.create(
        server=fleet["fresh"],
        received_at=timezone.now(),
        effective_ns=updates[-1].effective_ns,
        reachable=True,
    )
    Server.objects.filter(name="fuseki-3").update(
        failed_key=updates[3].key, last_error="HTTP 500 from the store"
    )

    html = viewer_client.get(f"/publications/{event.pk}/").content.decode()

    assert "1 of 3" in html and updates[3].key in html
    assert '<td data-label="This publication" class="outcome outcome-good">applied</td>' in html
    assert (
        'outcome-warn">pending' in html
        and 'outcome-bad">failed' in html
        and "HTTP 500 from the store" in html
    )
    listing = viewer_client.get("/publications/").content.decode()
    assert f'<a href="/publications/{event.pk}/">1 of 3 servers</a>' in listing
    assert viewer_client.get("/publications/999999/").status_code == 404


def test_server_page_shows_the_agent_its_store_and_what_its_runs_skipped(viewer_client, fleet):
    server = fleet["lagging"]
    StatusReport.objects.create(
        server=server,
        received_at=timezone.now(),
        reachable=True,
        body={
            "agentVersion": "0.1.0",
            "store": {"kind": "oxigraph", "quads": 123456, "bytes": 5 * 1024 * 1024},
            "skipped": [
                {"key": "updates/k9", "reason": "superseded by replace of the same graph (updates/k10)"}
            ],
        },
    )
    UpdateRun.objects.create(
        server=server,
        started_at=timezone.now(),
        finished_at=timezone.now(),
        result="ok",
        ops_applied=12,
        skipped=[{"key": "updates/k9", "reason": "superseded by replace of the same graph (updates/k10)"}],
    )

    html = viewer_client.get("/servers/fuseki-2/").content.decode()

    assert "dms-update 0.1.0" in html and "oxigraph, 5.0\xa0MB" in html and "123,456 triples" in html
    assert "The last run skipped 1 key" in html and "1 skipped" in html
    assert "updates/k9</code>: superseded by replace of the same graph" in html
    assert "Behind by (time)" in html and "Updates to replay" in html
    week = viewer_client.get("/servers/fuseki-2/?range=7d").content.decode()
    assert "Behind by (time)" in week and 'aria-current="true">7 days' in week


def test_a_push_agent_without_runs_is_not_said_to_have_a_schedule(viewer_client, fleet):
    Server.objects.filter(name="fuseki-2").update(agent_url="http://10.0.0.9:8586")
    assert "next scheduled run" not in viewer_client.get("/servers/fuseki-2/").content.decode()
    assert "This agent runs when asked" in viewer_client.get("/servers/fuseki-2/history").content.decode()


@pytest.mark.parametrize("path", ["/favicon.ico"])
def test_the_favicon_is_served(client, path):
    from django.contrib.staticfiles import finders

    response = client.get(path)
    assert response.status_code == 301 and response["Location"] == "/static/favicon.ico"
    icon = open(finders.find("favicon.ico"), "rb").read()
    assert icon[:4] == b"\x00\x00\x01\x00" and icon[22:26] == b"\x89PNG"  # an ICO holding a PNG
