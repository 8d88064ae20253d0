"""The SPARQL endpoint backend: Graph Store Protocol + SPARQL Update over HTTP.

The ledger is a small SQLite file beside status.json, committed right after each
operation succeeds: a crash between the endpoint's answer and that commit makes
the next run repeat exactly that one operation (DESIGN §4: at most the
operation in flight repeats on a remote endpoint).

Images and dumps are installed by the hook scripts `install_image` /
`install_dump` in `bindir`, called as the original tool did (in `dblocation`,
with the object's URL, the database name and, for a dump, the newest `.opt`
file). Without an `install_dump` hook a dump is POSTed as N-Quads to the Graph
Store endpoint after clearing the dataset.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import requests

from dmsupdate.agent.config import Config
from dmsupdate.agent.errors import AgentError, OperationFailed, Throttled, parse_retry_after
from dmsupdate.agent.screening import read_update, screened
from dmsupdate.state.keys import EffectiveTime, InvalidKey
from dmsupdate.state.plan import LedgerState, PlanEntry
from dmsupdate.state.stores import ObjectInfo, ObjectStore, StoreError, open_verified

MEDIA_TYPES = {
    "ttl": "text/turtle",
    "nt": "application/n-triples",
    "nq": "application/n-quads",
    "rdf": "application/rdf+xml",
}
TIMEOUT = (10, 3600)  # connect, read: a big replace may take a while to be acknowledged
CHUNK = 1 << 20
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


def check_response(response: requests.Response, what: str) -> None:
    """Raise Throttled for 429/503, OperationFailed for any other error status."""
    if response.status_code in (429, 503):
        retry = parse_retry_after(response.headers.get("Retry-After"))
        hint = f", retry after {retry:g} s" if retry is not None else ""
        raise Throttled(f"{what}: HTTP {response.status_code} from {response.url}{hint}", retry)
    if response.status_code >= 400:
        detail = response.text[:300].strip()
        raise OperationFailed(f"{what}: HTTP {response.status_code} from {response.url}: {detail}")


def _chunks(stream: BinaryIO) -> Iterator[bytes]:
    while chunk := stream.read(CHUNK):
        yield chunk


class SparqlBackend:
    """Applies plan entries to a remote SPARQL service."""

    def __init__(self, config: Config, status_effective: str | None = None) -> None:
        self.config = config
        self.query_url, self.update_url, self.gsp_url = config.endpoints()
        self.ledger = SqliteLedger(config.ledger_path)
        self.session = requests.Session()
        self._status_effective = status_effective

    def close(self) -> None:
        self.session.close()
        self.ledger.close()

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

    def _request(self, method: str, url: str, what: str, **kwargs: object) -> requests.Response:
        try:
            response = self.session.request(method, url, timeout=TIMEOUT, **kwargs)  # type: ignore[arg-type]
        except requests.RequestException as exc:
            raise OperationFailed(f"{what}: cannot reach {url}: {exc}") from exc
        return response

    def apply(self, entry: PlanEntry, source: ObjectStore) -> None:
        """Run one operation on the endpoint, then record it (and what it settles) in the ledger."""
        what = f"{entry.op} {entry.key}"
        if entry.op == "drop":
            response = self._request("DELETE", self.gsp_url, what, params={"graph": entry.graph})
            if response.status_code != 404:  # dropping a missing graph is fine
                check_response(response, what)
        elif entry.op in ("update", "postproc"):
            body = read_update(source, entry.info).encode()
            response = self._request(
                "POST",
                self.update_url,
                what,
                data=body,
                headers={"Content-Type": "application/sparql-update; charset=utf-8"},
            )
            check_response(response, what)
        elif entry.op in ("add", "replace"):
            fmt = (entry.format or "").removesuffix(".gz")
            media = MEDIA_TYPES.get(fmt)
            if media is None:
                raise OperationFailed(f"{what}: no media type for format {entry.format!r}")
            self._send(
                "POST" if entry.op == "add" else "PUT",
                source,
                entry.info,
                what,
                media,
                {"graph": entry.graph},
            )
        else:
            raise OperationFailed(f"{entry.op} is not an update operation")
        self.ledger.record([entry.key, *entry.settles])

    def _send(
        self,
        method: str,
        source: ObjectStore,
        info: ObjectInfo | None,
        what: str,
        media: str,
        params: dict[str, str | None] | None,
    ) -> None:
        """Stream an object (gzip decoded on the fly) as a request body; verify it was read whole."""
        if info is None:
            raise OperationFailed("no object information for this key")
        try:
            with open_verified(source, info) as stream:
                response = self._request(
                    method,
                    self.gsp_url,
                    what,
                    params=params,
                    data=_chunks(screened(stream, info.key, media)),
                    headers={"Content-Type": media},
                )
                stream.read(1)  # the end of the stream is where size and MD5 are checked
        except (OSError, EOFError, StoreError) as exc:
            raise OperationFailed(f"{what}: cannot read {info.key}: {exc}") from exc
        check_response(response, what)

    def install(self, entry: PlanEntry, source: ObjectStore, opt: ObjectInfo | None = None) -> None:
        """Install an image or dump through the hook scripts (or POST a dump), then reset the ledger."""
        self.ledger.reset(None, None)  # a crash from here on means: bootstrap again
        hook = Path(self.config.bindir) / f"install_{entry.op}"
        if hook.is_file() and os.access(hook, os.X_OK):
            self._run_hook(hook, entry, source, opt)
            self._wait_for_service()
        elif entry.op == "dump":
            what = f"dump {entry.key}"
            check_response(
                self._request(
                    "POST",
                    self.update_url,
                    what,
                    data=b"DROP ALL",
                    headers={"Content-Type": "application/sparql-update"},
                ),
                what,
            )
            self._send("POST", source, entry.info, what, "application/n-quads", None)
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
            raise OperationFailed(f"{hook.name} exited with {done.returncode}: {tail}")

    def _wait_for_service(self, attempts: int = 10, pause: float = 1.0) -> None:
        """The hooks start the server; wait until it answers a query (as the original did)."""
        last = ""
        for _ in range(attempts):
            try:
                r = self.session.get(self.query_url, params={"query": "ASK {}"}, timeout=10)
                if r.status_code < 400:
                    return
                last = f"HTTP {r.status_code}"
            except requests.RequestException as exc:
                last = str(exc)
            time.sleep(pause)
        raise AgentError(f"the SPARQL service at {self.query_url} does not answer after the install: {last}")
