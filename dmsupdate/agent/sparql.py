"""The SPARQL endpoint backend: Graph Store Protocol + SPARQL Update over HTTP.

The ledger is a small SQLite file beside status.json, committed right after each
operation succeeds: a crash between the endpoint's answer and that commit makes
the next run repeat exactly that one operation (DESIGN §4: at most the
operation in flight repeats on a remote endpoint).

Each upload is decompressed into a temporary file first and sent with a
`Content-Length` (dmsupdate.agent.rdfspool); with `verify: counts` the store is
then asked whether it holds what was sent (dmsupdate.agent.sparql_verify).

Images and dumps are installed by the hook scripts `install_image` /
`install_dump` in `bindir`, called as the original tool did (in `dblocation`,
with the object's URL, the database name and, for a dump, the newest `.opt`
file); the agent then waits up to `hook_wait_seconds` for the store to answer.
Without an `install_dump` hook the agent loads a dump itself
(dmsupdate.agent.dumpload).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import IO

import requests

from dmsupdate.agent.config import Config
from dmsupdate.agent.dumpload import load_dump, verify_hook_load
from dmsupdate.agent.errors import AgentError, OperationFailed
from dmsupdate.agent.rdfspool import read_facts, spool
from dmsupdate.agent.screening import read_update, screened
from dmsupdate.agent.sparql_http import SparqlClient, check_response
from dmsupdate.agent.sparql_verify import verify_add, verify_dropped, verify_replace
from dmsupdate.state.keys import EffectiveTime, InvalidKey
from dmsupdate.state.plan import LedgerState, PlanEntry
from dmsupdate.state.stores import ObjectInfo, ObjectStore, StoreError, open_verified

__all__ = ["SparqlBackend", "SqliteLedger", "check_response"]

MEDIA_TYPES = {
    "ttl": "text/turtle",
    "nt": "application/n-triples",
    "nq": "application/n-quads",
    "rdf": "application/rdf+xml",
}
HOOK_TIMEOUT = 6 * 3600


class SqliteLedger:
    """Applied keys and the bootstrap baseline, in `logArea/ledger.sqlite`."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)")
        self.db.execute("CREATE TABLE IF NOT EXISTS applied (key TEXT PRIMARY KEY)")

    def state(self) -> LedgerState:
        meta = dict(self.db.execute("SELECT name, value FROM meta").fetchall())
        baseline = None
        if meta.get("baseline"):
            try:
                baseline = EffectiveTime.parse_text(meta["baseline"])
            except InvalidKey:
                baseline = None
        applied = frozenset(k for (k,) in self.db.execute("SELECT key FROM applied"))
        return LedgerState(baseline=baseline, applied=applied, bootstrap_key=meta.get("bootstrap"))

    def record(self, keys: list[str]) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR IGNORE INTO applied (key) VALUES (?)", [(k,) for k in keys])

    def reset(self, baseline: EffectiveTime | None, bootstrap: str | None) -> None:
        """Forget everything (a bootstrap begins) and, when given, set the new baseline."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM applied")
            self.db.execute("DELETE FROM meta")
            if baseline is not None:
                self.db.executemany(
                    "INSERT INTO meta (name, value) VALUES (?, ?)",
                    [("baseline", baseline.path), ("bootstrap", bootstrap or "")],
                )

    def close(self) -> None:
        self.db.close()


class SparqlBackend:
    """Applies plan entries to a remote SPARQL service."""

    def __init__(self, config: Config, status_effective: str | None = None) -> None:
        self.config = config
        self.client = SparqlClient(config)
        self.query_url, self.update_url, self.gsp_url = config.endpoints()
        self.ledger = SqliteLedger(config.ledger_path)
        self._status_effective = status_effective
        self.verify = config.verify == "counts"
        self.dump_mode: str | None = None  # how the last dump was loaded: hook, quads or graphs

    @property
    def session(self) -> requests.Session:
        return self.client.session

    def close(self) -> None:
        self.client.close()
        self.ledger.close()

    def _request(self, method: str, url: str, what: str, **kwargs: object) -> requests.Response:
        """A request with the endpoint's credentials (dmsupdate.agent.sparql_fingerprint queries through it)."""
        return self.client.request(method, url, what, **kwargs)

    def ledger_state(self) -> LedgerState:
        """The SQLite ledger; a server migrated from the original tool starts from status.json's effectiveDate."""
        state = self.ledger.state()
        if state.baseline is None and self._status_effective:
            try:
                baseline = EffectiveTime.parse_text(self._status_effective)
            except InvalidKey:
                return state
            if baseline.nanos > 0:  # the original tool wrote 1970-01-01 for "nothing applied"
                self.ledger.reset(baseline, None)
                return self.ledger.state()
        return state

    def foreign_database(self) -> bool:
        """A remote endpoint has no database directory of ours to protect."""
        return False

    def settle(self, keys: list[str]) -> None:
        if keys:
            self.ledger.record(keys)

    def apply(self, entry: PlanEntry, source: ObjectStore) -> None:
        """Run one operation on the endpoint (and check it), then record it and what it settles in the ledger."""
        what = f"{entry.op} {entry.key}"
        if entry.op == "drop":
            assert entry.graph is not None
            self.client.delete_graph(entry.graph, what)
            if self.verify:
                verify_dropped(self.client, entry.graph, what)
        elif entry.op in ("update", "postproc"):
            self.client.update(read_update(source, entry.info), what)
        elif entry.op in ("add", "replace"):
            fmt = (entry.format or "").removesuffix(".gz")
            media = MEDIA_TYPES.get(fmt)
            if media is None or entry.graph is None:
                raise OperationFailed(f"{what}: no media type for format {entry.format!r}")
            self._upload(entry, source, media, what)
        else:
            raise OperationFailed(f"{entry.op} is not an update operation")
        self.ledger.record([entry.key, *entry.settles])

    def _upload(self, entry: PlanEntry, source: ObjectStore, media: str, what: str) -> None:
        """Spool the object, read its facts (verify), send it with its length, then check the graph."""
        assert entry.graph is not None
        with self._spool(source, entry.info, media, what) as body:
            facts = None
            if self.verify:
                try:
                    facts = read_facts(body, media, entry.key).whole
                except (SyntaxError, ValueError) as exc:
                    raise OperationFailed(f"{what}: {exc}") from exc
            before = self.client.graph_triples(entry.graph, what) if facts and entry.op == "add" else 0
            method = "POST" if entry.op == "add" else "PUT"
            self.client.send(method, body, media, {"graph": entry.graph}, what)
        if facts is None:
            return
        if entry.op == "add":
            verify_add(self.client, entry.graph, before, facts, what)
        else:
            verify_replace(self.client, entry.graph, facts, what)

    def _spool(self, source: ObjectStore, info: ObjectInfo | None, media: str, what: str) -> IO[bytes]:
        """The object decompressed (and RDF/XML screened) into a temporary file, its size and MD5 checked."""
        if info is None:
            raise OperationFailed("no object information for this key")
        try:
            with open_verified(source, info) as stream:
                body = spool(screened(stream, info.key, media))
                stream.read(1)  # the end of the stream is where size and MD5 are checked
            return body
        except (OSError, EOFError, StoreError) as exc:
            raise OperationFailed(f"{what}: cannot read {info.key}: {exc}") from exc

    def install(self, entry: PlanEntry, source: ObjectStore, opt: ObjectInfo | None = None) -> None:
        """Install an image or dump through the hook scripts (or load a dump), then reset the ledger."""
        self.ledger.reset(None, None)  # a crash from here on means: bootstrap again
        what = f"{entry.op} {entry.key}"
        hook = Path(self.config.bindir) / f"install_{entry.op}"
        if hook.is_file() and os.access(hook, os.X_OK):
            self._run_hook(hook, entry, source, opt)
            self._wait_for_service()
            if entry.op == "dump" and self.verify and entry.info is not None:
                verify_hook_load(self.client, source, entry.info, self.config.system_graphs, what)
            self.dump_mode = "hook"
        elif entry.op == "dump":
            if entry.info is None:
                raise OperationFailed("no object information for this key")
            self.dump_mode = load_dump(
                self.client, source, entry.info, self.config.system_graphs, self.verify, what
            )
        else:
            raise OperationFailed(
                f"image {entry.key}: no executable install_image hook in {self.config.bindir}; "
                "an image can only be installed into a SPARQL endpoint by that hook"
            )
        self.ledger.reset(entry.effective, entry.key)

    def _run_hook(self, hook: Path, entry: PlanEntry, source: ObjectStore, opt: ObjectInfo | None) -> None:
        if not self.config.dbname or not self.config.dblocation:
            raise OperationFailed(f"{hook.name} needs dblocation and dbname in the config")
        args = [str(hook), source.url(entry.key), self.config.dbname]
        if entry.op == "dump" and opt is not None:
            args.append(source.url(opt.key))
        env = dict(os.environ)
        if self.config.s3endpoint:
            env["DMS_UPDATE_S3ENDPOINT"] = self.config.s3endpoint
        Path(self.config.dblocation).mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run(
                args,
                cwd=self.config.dblocation,
                env=env,
                capture_output=True,
                text=True,
                timeout=HOOK_TIMEOUT,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise OperationFailed(f"{hook.name} failed to run: {exc}") from exc
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip()[-300:]
            raise OperationFailed(self.client.redact(f"{hook.name} exited with {done.returncode}: {tail}"))

    def _wait_for_service(self, pause: float = 1.0) -> None:
        """The hooks restart the server: wait up to `hook_wait_seconds` until it answers a query."""
        deadline = time.monotonic() + self.config.hook_wait_seconds
        last = ""
        while True:
            try:
                r = self.session.post(
                    self.query_url,
                    data={"query": "ASK {}"},
                    headers={"Accept": "application/sparql-results+json"},
                    timeout=10,
                    **self.client.environment(self.query_url),
                )
                if r.status_code < 400:
                    return
                last = f"HTTP {r.status_code}"
            except requests.RequestException as exc:
                last = str(exc)
            if time.monotonic() >= deadline:
                break
            time.sleep(pause)
        raise AgentError(
            self.client.redact(
                f"the SPARQL service at {self.query_url} does not answer {self.config.hook_wait_seconds:g} s "
                f"after the install hook: {last}"
            )
        )
