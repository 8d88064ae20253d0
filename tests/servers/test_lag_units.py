"""The third lag unit, `catch_up_seconds` (DESIGN §6), and the hourly roll-up of reported lag."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from dmsupdate.state.keys import NANOS
from jobs.models import JobKind, JobStatus
from jobs.services import start_job
from servers.lag import lag_for
from servers.models import LagHour, Server
from servers.services import note_lag_hour, record_report
from tests.servers.scripted_agents import BASE, add_server, run_in_thread
from tests.ui.conftest import _publish_updates

pytestmark = pytest.mark.django_db(transaction=True)


def test_catch_up_time_comes_from_the_servers_own_recent_runs(file_dataset, agents):
    from dmsupdate.state.keys import EffectiveTime

    _publish_updates(file_dataset, 8, EffectiveTime(BASE + NANOS), step_seconds=1)
    server = add_server(file_dataset, "steady", agents(ops=2, run_seconds=1.0).url)
    assert lag_for(server).catch_up_seconds is None  # no run yet: no rate to go by

    job = run_in_thread(
        lambda: start_job(JobKind.UPDATE, server=server, params={"timeout": 20}, run_now=True), limit=60
    )

    assert job.status == JobStatus.SUCCEEDED
    server.refresh_from_db()
    assert server.apply_ops == 2 and 1.0 <= server.apply_seconds < 5.0
    lag = lag_for(server)
    assert lag.pending_updates == 6
    # Six pending updates at the run's own pace (about half a second each).
    assert lag.catch_up_seconds == pytest.approx(6 * server.apply_seconds / 2)


def test_older_runs_weigh_less_in_the_apply_rate(file_dataset):
    server = add_server(file_dataset, "s")
    Server.note_apply_rate(server.pk, 10, 100.0)  # slow: 10 s per operation
    for _ in range(10):
        Server.note_apply_rate(server.pk, 10, 10.0)  # then 1 s per operation
    server.refresh_from_db()
    assert 1.0 < server.apply_seconds / server.apply_ops < 1.3  # the slow run has faded to a tenth


def test_reports_fold_into_one_row_per_hour_with_the_last_and_the_worst(file_dataset):
    server = add_server(file_dataset, "hourly")
    record_report(server, {"effectiveDate": "2026-11-20/10-00-00-0", "lastSucceeded": True})
    hour = LagHour.objects.get(server=server)
    note_lag_hour(server.pk, timezone.now(), 40, 7200.0)
    note_lag_hour(server.pk, timezone.now(), 3, 60.0)
    note_lag_hour(server.pk, timezone.now() - timedelta(hours=2), 1, 30.0)

    hour.refresh_from_db()
    assert (hour.pending_updates, hour.lag_seconds) == (3, 60.0)
    assert (hour.max_pending, hour.max_lag_seconds) == (40, 7200.0)
    assert LagHour.objects.filter(server=server).count() == 2


def test_the_fleet_row_says_how_long_catching_up_takes(client, file_dataset, django_user_model):
    from django.contrib.auth.models import Group

    from dmsupdate.state.keys import EffectiveTime

    _publish_updates(file_dataset, 5, EffectiveTime(BASE + NANOS), step_seconds=60)
    server = add_server(file_dataset, "slowpoke", last_report_at=timezone.now(), last_succeeded=True)
    Server.note_apply_rate(server.pk, 10, 480.0)  # 48 s per operation
    user = django_user_model.objects.create_user("v", password="x")
    user.groups.add(Group.objects.get_or_create(name="viewer")[0])
    client.force_login(user)

    html = client.get("/").content.decode()

    assert "5 updates, 4 min behind · ≈ 4 min to catch up" in html
