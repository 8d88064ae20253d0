"""A fleet job's own bookkeeping: one status report per run, writes that wait out a busy database, live progress."""

from __future__ import annotations

import gzip
import io
import threading
import time

import psycopg
import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.backends.signals import connection_created

from accounts.models import ApiToken, Role
from dmsupdate.state.keys import format_key
from jobs.models import Job, JobKind, JobStatus
from jobs.services import start_job
from publications.models import Dataset
from servers.models import RunResult, Server, StatusReport, UpdateRun
from tests.servers.scripted_agents import BASE, add_server, run_in_thread
from tests.servers.test_trigger_agents import DUMP, T0, T1, TOKEN, UPDATE, AgentProcess, register

G = "http://ex.org/g1"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def reporting_agent(s3_root, live_server, tmp_path):
    """A real `dms-update serve` (moto S3 root) whose config reports to the live control plane after every run."""
    root, endpoint = s3_root
    dataset = Dataset.objects.create(name="flood", s3root=root, s3endpoint=endpoint)
    store = dataset.open_store()
    dump = gzip.compress(DUMP)
    for key, body in (
        (format_key(T0, "dmsupdate", "dump"), dump),
        (format_key(T1, "readings", "add", G, "nt"), UPDATE),
    ):
        store.put_new(key, io.BytesIO(body), len(body))
        register(dataset, key, len(body))
    server = Server.objects.create(name="reporting", dataset=dataset, agent_token=TOKEN)
    user = get_user_model().objects.create_user("agent.reporting")
    _, token = ApiToken.issue(user, Role.AGENT, name="agent reporting", server=server)
    controlplane = {"url": live_server.url, "server": server.name, "token": token}
    agent = AgentProcess(tmp_path, "reporting", root, endpoint, controlplane=controlplane)
    Server.objects.filter(pk=server.pk).update(agent_url=agent.url)
    yield Server.objects.get(pk=server.pk)
    agent.stop()


def test_a_triggered_run_of_an_agent_that_reports_itself_is_recorded_once(reporting_agent):
    server = reporting_agent

    job = run_in_thread(
        lambda: start_job(JobKind.UPDATE, server=server, params={"timeout": 60}, run_now=True), limit=90
    )

    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result["servers"]["reporting"]["ops_applied"] == 2  # the dump and the update
    reports = StatusReport.objects.filter(server=server)
    assert reports.count() == 1  # the agent's own report; the job did not record it again
    report = reports.get()
    assert report.effective_ns == T1.nanos == Server.objects.get(pk=server.pk).effective_ns
    assert report.body["agentVersion"] and report.body["store"]["quads"] == 2


def test_the_job_waits_out_a_locked_server_row_and_still_succeeds(file_dataset, agents):
    """PostgreSQL: another transaction holds the server's row; the job's write times out, then is retried."""
    add_server(file_dataset, "held", agents(ops=3, run_seconds=0.3).url)
    db = connection.settings_dict
    holder = psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname=db["NAME"],
        autocommit=False,
    )
    released = threading.Event()

    def hold_then_release() -> None:
        time.sleep(3)
        holder.rollback()
        released.set()

    def short_lock_waits(sender, connection, **kwargs) -> None:
        with connection.cursor() as cur:
            cur.execute("SET lock_timeout = '200ms'")  # every new connection gives up on a held row quickly

    def job_with_short_lock_waits():
        return start_job(JobKind.UPDATE_ALL, dataset=file_dataset, params={"timeout": 30}, run_now=True)

    connection_created.connect(short_lock_waits)
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT id FROM servers_server WHERE name = 'held' FOR NO KEY UPDATE")
        threading.Thread(target=hold_then_release, daemon=True).start()
        job = run_in_thread(job_with_short_lock_waits, limit=60)
    finally:
        connection_created.disconnect(short_lock_waits)
        released.wait(10)
        holder.close()

    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result["summary"] == "1 ok"
    server = Server.objects.get(name="held")
    assert server.effective_ns == BASE + 3 * 1_000_000_000
    assert UpdateRun.objects.get(server=server).result == RunResult.OK
    assert StatusReport.objects.filter(server=server).count() == 1


def test_a_running_job_shows_how_far_each_server_is(file_dataset, agents):
    skipped = [
        {
            "key": "updates/2026-11-20/10-00-00-5/derive_postproc_x.ru",
            "reason": "superseded by a later postproc",
        }
    ]
    add_server(file_dataset, "slow", agents(ops=4, run_seconds=7, skipped=skipped).url)
    add_server(file_dataset, "quick", agents(ops=1).url)
    box: dict = {}
    worker = threading.Thread(
        target=lambda: box.update(
            job=run_in_thread(
                lambda: start_job(
                    JobKind.UPDATE_ALL, dataset=file_dataset, params={"timeout": 30}, run_now=True
                ),
                limit=60,
            )
        ),
        daemon=True,
    )
    worker.start()
    seen = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and seen is None:
        job = Job.objects.filter(kind=JobKind.UPDATE_ALL).first()
        servers = (job.result or {}).get("servers", {}) if job else {}
        if servers.get("slow", {}).get("progress") and servers.get("quick", {}).get("result") == "ok":
            seen = servers
        time.sleep(0.2)
    worker.join(60)

    assert seen is not None, "the job never showed the slow server's progress"
    assert seen["slow"] == {"result": "running", "progress": {"done": 1, "total": 4, "bytes": 2048}}
    final = box["job"]
    assert final.status == JobStatus.SUCCEEDED
    assert final.result["servers"]["slow"]["skipped"] == skipped
    assert UpdateRun.objects.get(server__name="slow").skipped == skipped
    assert "progress" not in final.result["servers"]["slow"]
