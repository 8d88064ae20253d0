"""Job runners of the servers app: update, update-all and rebuild (trigger and wait).

A job covers one server, a chosen few, or every enabled server of a dataset.
The push agents of a job of several servers are called from one event loop
(servers.fleet: a thread each would cost seconds to start in a fleet of
1,000); pull agents, and the one agent of a one-server job, are waited for in a
thread pool. Neither writes to the database; the job's own thread is the one
writer of its results: it records the answers as they come
(servers.runs), a batch per wake-up (with what came within BATCH_SECONDS), each write retried while the database is
busy (jobs.services.bookkeeping), so a fleet job never fails for its bookkeeping,
on SQLite as on PostgreSQL. While agents run, their reported `progress` is shown
in the job's partial result.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import nullcontext
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit.services import record
from jobs.models import Job, JobKind
from jobs.registry import runs
from jobs.services import JobFailed, bookkeeping, progress
from servers.agents import AgentAnswer, Outcome, call_agent, call_in_fleet
from servers.fleet import Fleet
from servers.models import RunKind, RunResult, RunTrigger, Server, UpdateRun
from servers.runs import begin_runs, finish_runs, longest_first, summarize

log = logging.getLogger(__name__)

# How often a trigger job writes its progress (and heartbeat) while answers come in.
PROGRESS_SECONDS = 1.0
# After an answer, how long a trigger job gathers more before recording them as one batch: a
# fleet's answers come as a stream, and each batch costs a fixed number of statements.
BATCH_SECONDS = 0.1


def servers_for(job: Job) -> list[Server]:
    """The servers a trigger job covers: its one server, the chosen ones, or every enabled server of its dataset."""
    chosen = (job.params or {}).get("servers")
    if job.server_id is not None:
        return [Server.objects.select_related("dataset").get(pk=job.server_id)]
    if chosen:
        return list(Server.objects.filter(pk__in=chosen, enabled=True).order_by("name"))
    if job.dataset_id is None:
        raise JobFailed("an update-all job needs a dataset")
    return list(Server.objects.filter(dataset_id=job.dataset_id, enabled=True).order_by("name"))


class Watched:
    """The last `progress` each agent showed while its run goes (written by pool threads, read by the job)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, dict] = {}

    def watcher(self, name: str):
        def seen(status: dict) -> None:
            shown = status.get("progress")
            if isinstance(shown, dict):
                with self._lock:
                    self._seen[name] = shown

        return seen

    def of(self, name: str) -> dict | None:
        with self._lock:
            return self._seen.get(name)


def _call_in_thread(
    server: Server, kind: str, run: UpdateRun, timeout: float, watched: Watched
) -> AgentAnswer:
    """Pool worker: wait on the agent; nothing written here (the job's thread records the answer)."""
    try:
        return call_agent(server, kind, timeout, run.started_at, watched.watcher(server.name))
    finally:
        connection.close()  # a pull agent's wait reads its reports on this thread's connection


def _record(batch: list[tuple[Server, AgentAnswer]], kind: str, job: Job, opened: dict) -> dict[str, dict]:
    """Record a batch of answers in one transaction, retried as a whole while the database is busy."""

    def write() -> dict[str, dict]:
        with transaction.atomic():
            return finish_runs(batch, kind, job, opened, audit_ok=False)

    try:
        return bookkeeping(write)
    except Exception as exc:  # noqa: BLE001 - one answer that cannot be recorded must not lose the others
        if len(batch) > 1:
            entries: dict[str, dict] = {}
            for one in batch:
                entries.update(_record([one], kind, job, opened))
            return entries
        server, _ = batch[0]
        log.error("recording the run of %s failed: %s", server.name, exc, exc_info=exc)
        error = f"{exc.__class__.__name__}: {exc}"
        bookkeeping(
            lambda: UpdateRun.objects.filter(pk=opened[server.pk].pk).update(
                result=RunResult.FAILED, error=f"not recorded: {error}"[:2000], finished_at=timezone.now()
            )
        )
        return {server.name: {"result": RunResult.FAILED, "error": error}}


def _crashed(exc: BaseException) -> AgentAnswer:
    return AgentAnswer(
        Outcome(RunResult.FAILED, error=f"{exc.__class__.__name__}: {exc}"), timezone.now(), 0.0
    )


def _live(servers: list[Server], results: dict[str, dict], watched: Watched) -> dict[str, Any]:
    """The job's result while it runs: finished servers' entries, and how far the others are."""
    shown: dict[str, dict] = {}
    for server in servers:
        if server.name in results:
            shown[server.name] = results[server.name]
        else:
            shown[server.name] = {"result": RunResult.RUNNING, "progress": watched.of(server.name)}
    return {"servers": shown, "summary": summarize(results) if results else ""}


@runs(JobKind.UPDATE, JobKind.UPDATE_ALL, JobKind.REBUILD)
def run_trigger_job(job: Job) -> dict[str, Any]:
    """Runner of `update`, `update_all` and `rebuild` jobs.

    params: `timeout` (seconds per server), `trigger` (a RunTrigger), `debounce` (seconds
    to wait first, so late files of a burst of publications are included), `servers`
    (ids of the chosen servers, when the job covers a few).
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
    watched = Watched()
    workers = max(1, min(int(conf["TRIGGER_CONCURRENCY"]), total))
    # All runs are opened first in one insert, so no agent's trigger waits on the database.
    opened = bookkeeping(lambda: begin_runs(servers, kind, job, trigger))
    progress(job, 0, f"0 of {total} servers done", _live(servers, results, watched))
    fleet = Fleet(workers) if job.server_id is None and any(s.agent_url for s in servers) else None
    with (
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"job{job.pk}") as pool,
        fleet or nullcontext(),
    ):
        pending: dict[Future, Server] = {}
        for s in longest_first(servers):
            if fleet is not None and s.agent_url:
                future = call_in_fleet(fleet, s, kind, timeout, watched.watcher(s.name))
            else:
                future = pool.submit(_call_in_thread, s, kind, opened[s.pk], timeout, watched)
            pending[future] = s
        shown = time.monotonic()
        while pending:
            # Wake up now and then even when no server finished: progress and the heartbeat stay fresh.
            done, _ = wait(pending, timeout=PROGRESS_SECONDS, return_when=FIRST_COMPLETED)
            if done and len(done) < len(pending):
                done, _ = wait(pending, timeout=BATCH_SECONDS, return_when=ALL_COMPLETED)
                # Recording holds the interpreter the fleet's loop needs to send the first requests.
                while fleet is not None and fleet.sending() and len(done) < len(pending):
                    done, _ = wait(pending, timeout=BATCH_SECONDS, return_when=ALL_COMPLETED)
            batch = []
            for future in done:
                server = pending.pop(future)
                try:
                    batch.append((server, future.result()))
                except Exception as exc:  # noqa: BLE001 - one server's crash must not lose the others
                    log.error("trigger of %s failed: %s", server.name, exc, exc_info=exc)
                    batch.append((server, _crashed(exc)))
            if batch:
                results.update(_record(batch, kind, job, opened))
            # Answers of a fleet arrive together: one progress write per PROGRESS_SECONDS, not one each.
            if pending and time.monotonic() - shown >= PROGRESS_SECONDS:
                text = f"{len(results)} of {total} servers done"
                progress(job, int(100 * len(results) / total), text, _live(servers, results, watched))
                shown = time.monotonic()
    ordered = {name: results[name] for name in sorted(results)}
    result = {"servers": ordered, "summary": summarize(ordered)}
    ok = {name: e.get("effective_after") for name, e in ordered.items() if e["result"] == RunResult.OK}
    if ok:
        # Failures were audited one row each, with their key and error; the successes share one row.
        target = servers[0].name if job.server_id else (job.dataset.name if job.dataset else "servers")
        bookkeeping(
            lambda: record(job.actor or "system", f"server.{kind}.ok", target, {"job": job.pk, "servers": ok})
        )
    if any(entry["result"] != RunResult.OK for entry in ordered.values()):
        raise JobFailed(result["summary"], result)
    return result
