"""Job runners of the servers app: update, update-all and rebuild (trigger and wait).

A job covers one server or every enabled server of a dataset. Agents are called
in a thread pool; each answer is recorded (servers.runs) on the pool thread's own
connection, so the answers of a fleet, which tend to arrive together, are
written in parallel.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit.services import record
from jobs.models import Job, JobKind
from jobs.registry import runs
from jobs.services import JobFailed, progress
from servers.agents import call_agent
from servers.models import RunKind, RunResult, RunTrigger, Server, UpdateRun
from servers.runs import begin_runs, finish_run, summarize

log = logging.getLogger(__name__)

# Database connections the pool threads may hold at once to record answers (bounded, whatever
# TRIGGER_CONCURRENCY is, so a wide fan-out cannot exhaust PostgreSQL's connection limit).
RECORDERS = 8
# How often a trigger job writes its progress (and heartbeat) while answers come in.
PROGRESS_SECONDS = 1.0
_recorders = threading.BoundedSemaphore(RECORDERS)


def servers_for(job: Job) -> list[Server]:
    """The servers a trigger job covers: its one server, or every enabled server of its dataset."""
    if job.server_id is not None:
        return [Server.objects.select_related("dataset").get(pk=job.server_id)]
    if job.dataset_id is None:
        raise JobFailed("an update-all job needs a dataset")
    return list(Server.objects.filter(dataset_id=job.dataset_id, enabled=True).order_by("name"))


def _trigger_in_thread(
    server: Server, kind: str, job: Job, run: UpdateRun, timeout: float, go: threading.Event
) -> dict:
    """Pool worker: wait on the agent, then record its answer on the thread's own connection."""
    # Start together: threads that already talk to agents would slow down (through the GIL)
    # the job's thread still starting the others, and the last agent would be called seconds late.
    go.wait()
    try:
        answer = call_agent(server, kind, timeout, run.started_at)
        with _recorders:
            with transaction.atomic():
                return finish_run(server, kind, job, run, answer, audit_ok=False)
    finally:
        connection.close()


@runs(JobKind.UPDATE, JobKind.UPDATE_ALL, JobKind.REBUILD)
def run_trigger_job(job: Job) -> dict[str, Any]:
    """Runner of `update`, `update_all` and `rebuild` jobs.

    params: `timeout` (seconds per server), `trigger` (a RunTrigger), `debounce` (seconds
    to wait first, so late files of a burst of publications are included).
    Ends `failed` (with the full per-server result) when any server did not end `ok`.
    """
    conf = settings.DMSUPDATE
    params = job.params or {}
    kind = RunKind.REBUILD if job.kind == JobKind.REBUILD else RunKind.UPDATE
    timeout = float(params.get("timeout") or conf["TRIGGER_TIMEOUT_SECONDS"])
    trigger = str(params.get("trigger") or RunTrigger.MANUAL)
    debounce = params.get("debounce")
    if debounce is None and trigger == RunTrigger.PUBLICATION:
        debounce = conf["TRIGGER_DEBOUNCE_SECONDS"]
    if debounce:
        progress(job, 0, f"waiting {float(debounce):g} s for more publications")
        time.sleep(float(debounce))
    servers = servers_for(job)
    if not servers:
        return {"servers": {}, "summary": "no enabled servers"}
    total = len(servers)
    results: dict[str, dict] = {}
    progress(job, 0, f"0 of {total} servers done")
    workers = max(1, min(int(conf["TRIGGER_CONCURRENCY"]), total))
    # All runs are opened first in one insert, so no agent's trigger waits on the database.
    opened = begin_runs(servers, kind, job, trigger)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"job{job.pk}") as pool:
        go = threading.Event()
        pending: dict[Future, Server] = {
            pool.submit(_trigger_in_thread, s, kind, job, opened[s.pk], timeout, go): s for s in servers
        }
        go.set()
        shown = time.monotonic()
        while pending:
            # Wake up now and then even when no server finished, to keep the job's heartbeat fresh.
            done, _ = wait(pending, timeout=10, return_when=FIRST_COMPLETED)
            for future in done:
                server = pending.pop(future)
                try:
                    results[server.name] = future.result()
                except Exception as exc:  # noqa: BLE001 - one server's crash must not lose the others
                    log.error("trigger of %s failed: %s", server.name, exc, exc_info=exc)
                    results[server.name] = {
                        "result": RunResult.FAILED,
                        "error": f"{exc.__class__.__name__}: {exc}",
                    }
                    UpdateRun.objects.filter(pk=opened[server.pk].pk).update(
                        result=RunResult.FAILED, error=str(exc)[:2000], finished_at=timezone.now()
                    )
            # Answers of a fleet arrive together: one progress write per PROGRESS_SECONDS, not one each.
            if not pending or time.monotonic() - shown >= PROGRESS_SECONDS:
                progress(job, int(100 * len(results) / total), f"{len(results)} of {total} servers done")
                shown = time.monotonic()
    ordered = {name: results[name] for name in sorted(results)}
    result = {"servers": ordered, "summary": summarize(ordered)}
    ok = {name: e.get("effective_after") for name, e in ordered.items() if e["result"] == RunResult.OK}
    if ok:
        # Failures were audited one row each, with their key and error; the successes share one row.
        target = servers[0].name if job.server_id else job.dataset.name
        record(job.actor or "system", f"server.{kind}.ok", target, {"job": job.pk, "servers": ok})
    if any(entry["result"] != RunResult.OK for entry in ordered.values()):
        raise JobFailed(result["summary"], result)
    return result
