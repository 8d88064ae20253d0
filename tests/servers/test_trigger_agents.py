"""Trigger and wait across real agents: `python -m dmsupdate.agent serve` processes on a moto S3 root.

Three agents keep embedded Oxigraph stores, one keeps a real `oxigraph serve` (SPARQL
backend) whose triple store goes down before the update, and one server's agent is
not running at all.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from dmsupdate.state.keys import EffectiveTime, format_key, parse_key
from jobs.models import JobKind, JobStatus
from jobs.services import start_job
from publications.models import Dataset, ObjectState, StateObject
from servers.lag import lag_for
from servers.models import RunResult, Server, UpdateRun
from tests.conftest import free_port, wait_for_port

pytestmark = pytest.mark.django_db(transaction=True)

REPO = Path(__file__).resolve().parents[2]
TOKEN = "fleet-agent-token"
T0 = EffectiveTime.parse("2026-11-20", "09-00-00-0")
T1 = EffectiveTime.parse("2026-11-20", "10-00-00-5")
DUMP = b'<http://ex.org/s> <http://ex.org/p> "base" <http://ex.org/g0> .\n'
UPDATE = b'<http://ex.org/s> <http://ex.org/p> "one" .\n'


def agent_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


class AgentProcess:
    """One `dms-update serve` with its own config, store and log area."""

    def __init__(self, base: Path, name: str, root: str, endpoint: str, **extra) -> None:
        self.dir = base / name
        (self.dir / "log").mkdir(parents=True)
        self.port = free_port()
        config = {
            "s3root": root,
            "s3endpoint": endpoint,
            "dblocation": str(self.dir),
            "dbname": "db",
            "logArea": str(self.dir / "log"),
            "bindir": str(self.dir / "bin"),
            "agent_token": TOKEN,
            "update_on_start": False,  # the tests trigger every run themselves
            **extra,
        }
        (self.dir / "config.json").write_text(json.dumps(config))
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dmsupdate.agent",
                "--config",
                str(self.dir / "config.json"),
                "serve",
                "--bind",
                f"127.0.0.1:{self.port}",
            ],
            env=agent_env(),
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "stderr.log", "wb"),  # noqa: SIM115 - closed with the process
        )
        wait_for_port(self.port, 30)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class OxigraphProcess:
    """A real `oxigraph serve`, stoppable in the middle of a test (its triple store going down)."""

    def __init__(self, base: Path) -> None:
        exe = shutil.which("oxigraph") or str(Path(sys.executable).parent / "oxigraph")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [exe, "serve", "--location", str(base / "oxigraph"), "--bind", f"127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def fleet(s3_root, tmp_path):
    """A dataset on moto with a dump, five registered servers, four agents running; all stopped after."""
    root, endpoint = s3_root
    dataset = Dataset.objects.create(name="flood", s3root=root, s3endpoint=endpoint)
    store = dataset.open_store()
    dump = gzip.compress(DUMP)
    dump_key = format_key(T0, "dmsupdate", "dump")
    store.put_new(dump_key, io.BytesIO(dump), len(dump))
    register(dataset, dump_key, len(dump))
    started: list = []
    oxigraph = OxigraphProcess(tmp_path)
    started.append(oxigraph)
    try:
        for i in range(3):
            agent = AgentProcess(tmp_path, f"ok-{i}", root, endpoint)
            started.append(agent)
            add_server(dataset, f"ok-{i}", agent.url)
        sparql = AgentProcess(
            tmp_path,
            "failing",
            root,
            endpoint,
            query_endpoint=f"{oxigraph.url}/query",
            update_endpoint=f"{oxigraph.url}/update",
            gsp_endpoint=f"{oxigraph.url}/store",
        )
        started.append(sparql)
        add_server(dataset, "failing", sparql.url)
        add_server(dataset, "down", f"http://127.0.0.1:{free_port()}")
        yield {"dataset": dataset, "store": store, "oxigraph": oxigraph, "dump_key": dump_key}
    finally:
        for process in started:
            process.stop()


def register(dataset: Dataset, key: str, size: int) -> StateObject:
    now = timezone.now()
    return StateObject.objects.create(
        dataset=dataset,
        key=key,
        size=size,
        first_seen=now,
        last_seen=now,
        state=ObjectState.PUBLISHED,
        **StateObject.fields_from_key(parse_key(key)),
    )


def add_server(dataset: Dataset, name: str, url: str) -> Server:
    return Server.objects.create(name=name, dataset=dataset, agent_url=url, agent_token=TOKEN)


def update_all(timeout: float, limit: float):
    """Run an update-all job and fail the test if it is still running after `limit` seconds."""
    box: dict = {}

    def target() -> None:
        from django.db import connection

        try:
            box["job"] = start_job(
                JobKind.UPDATE_ALL,
                dataset=Dataset.objects.get(name="flood"),
                actor="olivia",
                params={"timeout": timeout},
                run_now=True,
            )
        finally:
            connection.close()

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(limit)
    assert not worker.is_alive(), f"the job still runs after {limit} s"
    return box["job"]


def test_update_all_across_real_agents_gives_three_ok_one_unreachable_one_failed(fleet):
    first = update_all(timeout=60, limit=180)
    assert first.result["summary"] == "4 ok, 1 unreachable", first.result
    assert first.result["servers"]["ok-0"]["effective_after"] == T0.path

    body = UPDATE
    key = format_key(T1, "readings", "add", "http://ex.org/g1", "nt")
    fleet["store"].put_new(key, io.BytesIO(body), len(body))
    register(fleet["dataset"], key, len(body))
    fleet["oxigraph"].stop()  # the triple store behind `failing` goes down

    job = update_all(timeout=60, limit=180)

    assert job.status == JobStatus.FAILED
    assert job.result["summary"] == "3 ok, 1 unreachable, 1 failed"
    servers = job.result["servers"]
    for i in range(3):
        entry = servers[f"ok-{i}"]
        assert entry["result"] == "ok" and entry["ops_applied"] == 1
        assert entry["effective_before"] == T0.path and entry["effective_after"] == T1.path
    assert servers["failing"]["result"] == "failed"
    assert servers["failing"]["failed_key"] == key
    assert servers["failing"]["error"]
    assert servers["down"]["result"] == "unreachable"

    run = UpdateRun.objects.get(job=job, server__name="failing")
    assert (
        run.result == RunResult.FAILED and run.failed_key == key and run.error == servers["failing"]["error"]
    )
    assert UpdateRun.objects.get(job=job, server__name="ok-2").effective_after_ns == T1.nanos
    assert UpdateRun.objects.get(job=job, server__name="down").result == RunResult.UNREACHABLE
    audit = AuditEvent.objects.get(action="server.update.failed", target="failing", details__job=job.pk)
    assert audit.details["failed_key"] == key
    assert AuditEvent.objects.get(action="job.update_all.failed", details__job=job.pk).details["summary"] == (
        "3 ok, 1 unreachable, 1 failed"
    )
    states = {s.name: lag_for(s).state for s in Server.objects.all()}
    assert states == {"ok-0": "ok", "ok-1": "ok", "ok-2": "ok", "failing": "failing", "down": "unreachable"}


def test_rebuild_of_a_real_agent_reinstalls_from_the_newest_image(fleet):
    server = Server.objects.get(name="ok-1")

    job = start_job(JobKind.REBUILD, server=server, params={"timeout": 60}, run_now=True)

    entry = job.result["servers"]["ok-1"]
    assert entry["result"] == "ok" and entry["effective_after"] == T0.path
    server.refresh_from_db()
    assert server.rebuild_requested_at is None and lag_for(server).state == "ok"


def test_publication_trigger_waits_so_late_files_of_a_burst_are_included(file_root, tmp_path, settings):
    settings.DMSUPDATE = settings.DMSUPDATE | {"TRIGGER_DEBOUNCE_SECONDS": 3}
    root = file_root[0]
    dataset = Dataset.objects.create(name="burst", s3root=root)
    store = dataset.open_store()
    dump = gzip.compress(DUMP)
    store.put_new(format_key(T0, "dmsupdate", "dump"), io.BytesIO(dump), len(dump))
    agent = AgentProcess(tmp_path, "puller", root, None)
    try:
        server = add_server(dataset, "burst-1", agent.url)
        assert (
            start_job(JobKind.UPDATE, server=server, params={"timeout": 60}, run_now=True).result["summary"]
            == "1 ok"
        )
        first = format_key(T1, "readings", "add", "http://ex.org/g1", "nt")
        store.put_new(first, io.BytesIO(UPDATE), len(UPDATE))
        box: dict = {}

        def trigger() -> None:
            from django.db import connection

            try:
                box["job"] = start_job(
                    JobKind.UPDATE_ALL,
                    dataset=dataset,
                    params={"timeout": 60, "trigger": "publication"},
                    run_now=True,
                )
            finally:
                connection.close()

        worker = threading.Thread(target=trigger)
        worker.start()
        # The second file of the burst lands while the job waits out the debounce.
        second = format_key(EffectiveTime(T1.nanos + 1000), "readings", "add", "http://ex.org/g2", "nt")
        store.put_new(second, io.BytesIO(UPDATE), len(UPDATE))
        worker.join(120)
        assert not worker.is_alive()
    finally:
        agent.stop()

    entry = box["job"].result["servers"]["burst-1"]
    assert entry["result"] == "ok" and entry["ops_applied"] == 2
    assert UpdateRun.objects.get(job=box["job"]).trigger == "publication"
