"""A fleet job records a batch of answers in a fixed number of statements, with the same result as one by one."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dmsupdate.state.keys import NANOS, EffectiveTime
from jobs.models import JobKind
from jobs.services import start_job
from servers.agents import AgentAnswer, Outcome
from servers.lag import lag_for
from servers.models import LagHour, RunKind, RunResult, RunTrigger, Server, StatusReport, UpdateRun
from servers.runs import begin_runs, finish_runs
from tests.servers.scripted_agents import BASE, add_server
from tests.ui.conftest import _publish_updates

pytestmark = pytest.mark.django_db(transaction=True)


def _status(effective_ns: int, applied: int, ok: bool = True) -> dict:
    return {
        "effectiveDate": EffectiveTime(effective_ns).path,
        "lastSucceeded": ok,
        "lastUpdate": timezone.now().isoformat(),
        "applied": applied,
        "failedKey": None if ok else "updates/x",
        "error": None if ok else "the store said no",
        "skipped": [{"key": "updates/2016-01-15/04-00-03-0_a_postproc_c.ru", "reason": "superseded"}],
    }


def _record(file_dataset, count: int, prefix: str) -> tuple[list[Server], dict[str, dict], int]:
    servers = [add_server(file_dataset, f"{prefix}{i}", f"http://127.0.0.1:9/{i}") for i in range(count)]
    job = start_job(JobKind.UPDATE_ALL, dataset=file_dataset, params={})
    opened = begin_runs(servers, RunKind.UPDATE, job, RunTrigger.MANUAL)
    ok_at = BASE + 2 * NANOS
    batch = [
        (s, AgentAnswer(Outcome(RunResult.OK, _status(ok_at, 2)), timezone.now(), 1.0)) for s in servers[1:]
    ]
    batch.append(
        (servers[0], AgentAnswer(Outcome(RunResult.OK, _status(BASE, 0, ok=False)), timezone.now(), 1.0))
    )
    with CaptureQueriesContext(connection) as queries:
        entries = finish_runs(batch, RunKind.UPDATE, job, opened, audit_ok=False)
    return servers, entries, len(queries.captured_queries)


def test_a_batch_costs_the_same_statements_for_3_or_30_servers(file_dataset):
    _publish_updates(file_dataset, 4, EffectiveTime(BASE + NANOS), step_seconds=1)
    _, _, few = _record(file_dataset, 3, "few")
    _, _, many = _record(file_dataset, 30, "many")
    assert many == few


def test_a_batch_records_what_one_report_at_a_time_would(file_dataset):
    _publish_updates(file_dataset, 4, EffectiveTime(BASE + NANOS), step_seconds=1)
    servers, entries, _ = _record(file_dataset, 4, "s")
    failing, caught_up = servers[0], servers[1]

    assert entries[failing.name]["result"] == RunResult.FAILED
    assert entries[failing.name]["error"] == "the store said no"
    assert entries[caught_up.name]["result"] == RunResult.OK
    assert entries[caught_up.name]["ops_applied"] == 2 and entries[caught_up.name]["skipped_count"] == 1

    caught_up.refresh_from_db()
    assert caught_up.effective_ns == BASE + 2 * NANOS and caught_up.last_succeeded is True
    assert caught_up.apply_ops == 2 and caught_up.apply_seconds == 1.0
    report = StatusReport.objects.get(server=caught_up)
    assert report.pending_updates == lag_for(caught_up).pending_updates == 2
    hour = LagHour.objects.get(server=caught_up)
    assert hour.pending_updates == hour.max_pending == 2

    failing.refresh_from_db()
    assert failing.last_succeeded is False and failing.failed_key == "updates/x"
    assert failing.apply_ops == 0  # a failed run says nothing about the apply rate
    run = UpdateRun.objects.get(server=failing)
    assert run.result == RunResult.FAILED and run.finished_at is not None
    assert run.skipped == [{"key": "updates/2016-01-15/04-00-03-0_a_postproc_c.ru", "reason": "superseded"}]
