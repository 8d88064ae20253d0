"""Runs of the agent: plan, update and rebuild, with the lock, status.json and the report.

`Runner(config)` holds no global state: the control plane's demo and the
fleet's base-image builder call it in-process, several at a time.
"""

from __future__ import annotations

import logging
from typing import IO, Any

from dmsupdate.agent import version
from dmsupdate.agent.cache import CachedSource, ImageCache
from dmsupdate.agent.config import Config
from dmsupdate.agent.embedded import EmbeddedBackend
from dmsupdate.agent.errors import AgentError, Throttled
from dmsupdate.agent.hooks import run_post_update
from dmsupdate.agent.kept_fingerprint import KeptFingerprint
from dmsupdate.agent.progress import CountingStore, RunProgress, store_facts
from dmsupdate.agent.ready import note_seen, readiness
from dmsupdate.agent.recent import RecentWindow
from dmsupdate.agent.report import report_status
from dmsupdate.agent.sparql import SparqlBackend
from dmsupdate.agent.sparql_fingerprint import endpoint_fingerprint
from dmsupdate.agent.status import RunLock, StatusWriter, read_status, write_status
from dmsupdate.state.keys import EffectiveTime, window_start_key
from dmsupdate.state.plan import (
    LedgerState,
    Plan,
    PlanEntry,
    build_plan,
    choose_bootstrap,
    deferred_reason,
    horizon,
    split_due,
    window_start,
)
from dmsupdate.state.redact import redact
from dmsupdate.state.status import now_iso
from dmsupdate.state.stores import ObjectInfo, ObjectStore, StoreError, StoreUnavailable, open_store

log = logging.getLogger("dmsupdate.agent")

Backend = EmbeddedBackend | SparqlBackend


class Runner:
    """Plans and performs runs for one configured server."""

    def __init__(self, config: Config, progress_out: IO[str] | None = None) -> None:
        self.config = config
        # Where `update` and `rebuild` draw their progress bar (a terminal); None: nowhere.
        self.progress_out = progress_out
        # The longest Retry-After seen in the last run (endpoint, store or control plane); read by `watch`.
        self.retry_after: float | None = None
        self.throttled = False
        # Set when the control plane answered the last report with a rebuild request.
        self.rebuild_requested = False
        # The dataset whose head `watch` polls (config, else the first report's answer).
        self.dataset = config.controlplane.dataset if config.controlplane else None

    # Public API -----------------------------------------------------------

    def plan(self) -> list[PlanEntry]:
        """What `update` would do now (bootstrap first when there is no database)."""
        return self.plan_details().entries

    def plan_details(self) -> Plan:
        """The plan with the late and invalid keys the listing revealed."""
        with self.lock():
            backend = self._backend()
            kept = self._kept()  # opening the store changes its files: keep the fingerprint valid
            try:
                plan, _opt, _state = self._make_plan(backend, self._source(), full_scan=False, rebuild=False)
            finally:
                backend.close()
                if kept is not None:
                    kept.save()
        return plan

    def update(self, full_scan: bool = False, verify: bool = False) -> dict[str, Any]:
        """Catch up (bootstrapping when needed); return the final status.

        With `verify` the fingerprint is the full one, from a scan of the whole store (`watch`, daily).
        """
        with self.lock():
            return self.run_locked("update", full_scan=full_scan, verify=verify)

    def rebuild(self) -> dict[str, Any]:
        """New database from the newest image/dump, then replay; return the final status."""
        with self.lock():
            return self.run_locked("rebuild")

    def verify(self) -> dict[str, Any]:
        """Compute the full fingerprint now by a scan of the whole store; return the status holding it."""
        with self.lock():
            return self.verify_locked()

    def verify_locked(self) -> dict[str, Any]:
        """`verify` for a caller holding the lock: record the fingerprint in status.json and report it."""
        path = self.config.status_path
        status = read_status(path)
        backend = self._backend(status)
        kept = self._kept()
        try:
            fingerprint = self._fingerprint(backend, kept, status, "full", rescan=True)
        finally:
            backend.close()
            if kept is not None:
                kept.save()
        if fingerprint is None:
            raise AgentError(
                f"there is no database at {self.config.db_dir} yet: run `dms-update update` first"
            )
        status["fingerprint"] = fingerprint
        write_status(path, status)
        self._report(status)
        return status

    def status(self) -> dict[str, Any]:
        """status.json, with `running` telling whether a run holds the lock now."""
        status = read_status(self.config.status_path)
        status["running"] = RunLock.is_held(self.config.lock_path)
        return status

    def lock(self, timeout: float | None = None) -> RunLock:
        """Take the run lock (shared by CLI, serve and watch); raise Busy after the bounded wait."""
        lock = RunLock(self.config.lock_path)
        lock.acquire(self.config.lock_timeout if timeout is None else timeout)
        return lock

    # Internals ------------------------------------------------------------

    def _source(self) -> ObjectStore:
        return open_store(self.config.s3root, self.config.s3endpoint)

    def _backend(self, status: dict[str, Any] | None = None) -> Backend:
        if self.config.embedded:
            assert self.config.db_dir is not None
            return EmbeddedBackend(self.config.db_dir)
        if status is None:
            status = read_status(self.config.status_path)
        effective = status.get("effectiveDate")
        return SparqlBackend(self.config, effective if isinstance(effective, str) else None)

    def _make_plan(
        self, backend: Backend, source: ObjectStore, full_scan: bool, rebuild: bool
    ) -> tuple[Plan, ObjectInfo | None, LedgerState]:
        state = backend.ledger_state()
        window = self.config.window_hours
        if not rebuild and state.baseline is None and backend.foreign_database():
            raise AgentError(
                f"{self.config.db_dir} holds a store without a dms-update ledger; "
                "run `dms-update rebuild` to replace it with the newest image or dump"
            )
        until = horizon(EffectiveTime.now())
        if rebuild or state.baseline is None:
            images, deferred_images = split_due(source.list("images/"), until)
            boot, opt, invalid_images = choose_bootstrap(images)
            if boot is None:
                raise AgentError(
                    f"no image or dump under {source.url('images/')} to initialise the database from"
                )
            start_after = None if full_scan else window_start_key("updates", boot.effective)
            listing = source.list("updates/", start_after=start_after)
            plan = build_plan(listing, LedgerState(baseline=None), window, bootstrap=boot, until=until)
            plan.invalid = invalid_images + plan.invalid
            plan.deferred = deferred_images + plan.deferred
            return plan, opt, LedgerState(baseline=None)
        newest = state.newest
        assert newest is not None
        start_after = None if full_scan else window_start_key("updates", window_start(newest, window))
        listing = source.list("updates/", start_after=start_after)
        return build_plan(listing, state, window, until=until), None, state

    def run_locked(self, kind: str, full_scan: bool = False, verify: bool = False) -> dict[str, Any]:
        """Perform an update or rebuild; the caller holds the lock. Returns the final status."""
        self.retry_after = None
        self.throttled = False
        self.rebuild_requested = False
        self._shown: RunProgress | None = None
        path = self.config.status_path
        for leftover in path.parent.glob(".status-*"):  # temp files of a run killed mid-write
            leftover.unlink(missing_ok=True)
        status = read_status(path)
        status.update(running=True, applied=0, lastRun=kind, skipped=[], agentVersion=version())
        write_status(path, status)
        self._writer = writer = StatusWriter(path)
        backend = self._backend(status)
        kept = self._kept()
        try:
            self._perform(kind, full_scan, backend, status)
        finally:
            writer.close()
            if self._shown is not None:
                self._shown.close()
            mode = "full" if verify else self.config.fingerprint
            try:
                if self.throttled:  # the store asked us to back off: no fingerprint queries now
                    raise AgentError("the store is throttling requests")
                status["fingerprint"] = self._fingerprint(backend, kept, status, mode, rescan=verify)
            except Exception as exc:  # a fingerprint that cannot be computed never fails the run
                log.warning("could not compute the fingerprint: %s", exc)
                status["fingerprint"] = None
                if kept is not None:
                    kept.graphs = None
            status["store"] = self._store_facts(backend, status)
            backend.close()
            if kept is not None:
                kept.save()
            status.update(running=False, progress=None, lastUpdate=now_iso())
            for name in ("error", "hookError"):  # whatever set them, no credential is written or reported
                if isinstance(status.get(name), str):
                    status[name] = redact(status[name], self.config.secrets)
            write_status(path, status)
        status["hookError"] = run_post_update(self.config, status) if status.get("lastSucceeded") else None
        status["ready"] = readiness(self.config, status)
        write_status(path, status)
        self._report(status)
        return status

    def _kept(self) -> KeptFingerprint | None:
        """The embedded store's kept fingerprint, taken before the store opens (None: nothing to keep)."""
        if not self.config.embedded or self.config.fingerprint == "off" or self.config.db_dir is None:
            if self.config.embedded:
                self.config.fingerprint_path.unlink(missing_ok=True)  # it would go stale
            return None
        kept = KeptFingerprint(self.config.fingerprint_path, self.config.db_dir)
        kept.take()
        return kept

    def _fingerprint(
        self, backend: Backend, kept: KeptFingerprint | None, status: dict[str, Any], mode: str, rescan: bool
    ) -> dict[str, Any] | None:
        """status.json `fingerprint` in `mode` (None when `off`, or when there is no database yet)."""
        effective = status.get("effectiveDate")
        if mode == "off":
            return None
        if isinstance(backend, SparqlBackend):
            return endpoint_fingerprint(backend, mode, effective)
        db_dir = self.config.db_dir
        if db_dir is None or not db_dir.is_dir() or not any(db_dir.iterdir()):
            return None
        if kept is None:
            kept = KeptFingerprint(self.config.fingerprint_path, db_dir)
        if rescan:
            kept.rescan(backend.store)
        else:
            kept.refresh(backend.store, backend.changes, mode)
        return kept.fingerprint(mode, effective)

    def _report(self, status: dict[str, Any]) -> None:
        """Send status.json to the control plane, when one is configured."""
        if self.config.controlplane is not None:
            answer = report_status(self.config.controlplane, status)
            if answer.retry_after is not None:
                self._note_throttle(answer.retry_after)
            # A pull agent learns of a rebuild an admin asked for from the report's answer.
            self.rebuild_requested = answer.rebuild
            self.dataset = self.dataset or answer.dataset

    def _store_facts(self, backend: Backend, status: dict[str, Any]) -> dict[str, Any] | None:
        """status.json `store`; an unchanged store keeps its last count (a full count is a scan)."""
        db_dir = self.config.db_dir if self.config.embedded else None
        stored = status.get("store")
        before: dict[str, Any] = stored if isinstance(stored, dict) else {}
        count = None
        if isinstance(backend, EmbeddedBackend) and db_dir is not None and db_dir.is_dir():
            if status.get("applied") or "quads" not in before:
                count = backend.quad_count
            else:
                count = lambda: before["quads"]  # noqa: E731
        try:
            return store_facts(db_dir, status.get("fingerprint"), count)
        except (OSError, ValueError) as exc:
            log.warning("could not describe the store: %s", exc)
            return None

    def _note_throttle(self, retry_after: float | None) -> None:
        self.throttled = True
        if retry_after is not None:
            self.retry_after = max(self.retry_after or 0.0, retry_after)

    def _fail(self, status: dict[str, Any], key: str | None, exc: BaseException) -> None:
        if isinstance(exc, Throttled):
            self._note_throttle(exc.retry_after)
        elif isinstance(exc, StoreUnavailable):
            self._note_throttle(None)  # S3 503/SlowDown (after boto3's own retries): back off
        message = str(exc) if isinstance(exc, AgentError | StoreError) else f"{type(exc).__name__}: {exc}"
        message = redact(message, self.config.secrets)
        status.update(lastSucceeded=False, failedKey=key, error=message)
        log.error("run failed%s: %s", f" at {key}" if key else "", message)

    def _perform(self, kind: str, full_scan: bool, backend: Backend, status: dict[str, Any]) -> None:
        try:
            source = self._source()
            if self.config.cache_max_bytes > 0:
                source = CachedSource(source, ImageCache(self.config.cache_dir, self.config.cache_max_bytes))  # type: ignore[assignment]
            plan, opt, state = self._make_plan(backend, source, full_scan, rebuild=kind == "rebuild")
        except Exception as exc:  # a run that cannot even plan still ends with a status naming why
            self._fail(status, None, exc)
            return
        newest = max(
            [e.effective.nanos for e in plan.entries] + ([state.newest.nanos] if state.newest else []),
            default=None,
        )
        note_seen(self.config.root_head_path, newest)
        if full_scan:
            status["late"] = plan.late
            status["invalid"] = sorted(set(plan.invalid))
        else:
            status["invalid"] = sorted(set(status.get("invalid") or []) | set(plan.invalid))
        tracker = RecentWindow(state, self.config.window_hours)
        status.update(tracker.fields())
        status["skipped"] = [{"key": e.key, "reason": e.skip} for e in plan.entries if e.skip]
        if plan.deferred:
            reason = deferred_reason(horizon(EffectiveTime.now()))
            status["skipped"] += [{"key": key, "reason": reason} for key in plan.deferred]
            log.warning(
                "%d key(s) dated ahead of this server's clock deferred: %s", len(plan.deferred), reason
            )
        self._shown = shown = RunProgress(
            plan, lambda: self._writer.save(status | {"progress": shown.fields()}), self.progress_out
        )
        source = CountingStore(source, shown)  # type: ignore[assignment]
        status["progress"] = shown.fields()
        if state.bootstrap_key:
            status["image"] = state.bootstrap_key
        if plan.late:
            log.warning("%d late key(s) older than the window were never applied", len(plan.late))
        applied = 0
        try:
            backend.settle(plan.settled)
        except Exception as exc:
            self._fail(status, None, exc)
            return
        for entry in plan.entries:
            if entry.skip:
                continue
            try:
                if entry is plan.bootstrap:
                    log.info("installing %s %s", entry.op, entry.key)
                    backend.install(entry, source, opt)
                    tracker = RecentWindow(LedgerState(baseline=entry.effective), self.config.window_hours)
                    status["image"] = entry.key
                    status["late"] = []
                else:
                    backend.apply(entry, source)
                    tracker.add(entry)
            except Exception as exc:  # any failure stops the run here and is named in status
                status["applied"] = applied
                self._fail(status, entry.key, exc)
                return
            applied += 1
            shown.step()
            log.info("applied %s %s", entry.op, entry.key)
            status.update(tracker.fields(), applied=applied, lastUpdate=now_iso(), progress=shown.fields())
            self._writer.save(status)
        status.update(applied=applied, lastSucceeded=True, failedKey=None, error=None)
