"""The embedded store's fingerprint, kept up to date run after run (DESIGN §5, §5b).

Each graph's count and hash sum live in `logArea/fingerprint.json` between runs,
with a signature of the store's files (name, size, modification time) taken after
the store was closed. A run reads the file and deletes it before the store is
opened, and writes it again after the store is closed: a run that crashes leaves
no file, and a store written by anything else (a hand edit, a restore) no longer
matches its signature. Either way the next run rescans the whole store: in doubt,
scan.

During a run the backend names the graphs each operation may change (add,
replace, drop: its graph; a SPARQL update: what dmsupdate.agent.update_scope
reads in it, or everything; an image or dump: everything); only those are
rescanned at the end of the run, each once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyoxigraph as ox

from dmsupdate.agent.fingerprint_scan import scan_graph, scan_store
from dmsupdate.state.fingerprint import GraphSum, build_fingerprint, is_bookkeeping
from dmsupdate.state.status import now_iso

log = logging.getLogger("dmsupdate.agent")
FORMAT_VERSION = 1


@dataclass
class Changes:
    """What the operations of a run may have changed: some graphs, or the whole store."""

    graphs: set[str] = field(default_factory=set)
    everything: bool = False

    def graph(self, name: str) -> None:
        self.graphs.add(name)

    def these(self, names: set[str] | None) -> None:
        if names is None:
            self.everything = True
        else:
            self.graphs |= names

    def all(self) -> None:
        self.everything = True


def files_signature(db_dir: Path) -> str:
    """A digest of the names, sizes and modification times of the store's files."""
    try:
        entries = sorted(
            (e.name, e.stat().st_size, e.stat().st_mtime_ns)
            for e in os.scandir(db_dir)
            if e.is_file(follow_symlinks=False)
        )
    except OSError:
        return ""
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


class KeptFingerprint:
    """Per-graph counts and hash sums of one embedded store; None until known (then a scan makes them)."""

    def __init__(self, path: Path, db_dir: Path) -> None:
        self.path = path
        self.db_dir = db_dir
        self.graphs: dict[str, GraphSum] | None = None

    def take(self) -> None:
        """Read the kept state if the store's files still match it, and delete the file (see the module doc)."""
        self.graphs = None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None
        self.path.unlink(missing_ok=True)
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
            return
        signature = files_signature(self.db_dir)
        if not signature or data.get("files") != signature:
            log.info("the store changed since its fingerprint was kept: it will be rescanned")
            return
        try:
            self.graphs = {
                g: GraphSum(int(n), int(h, 16))
                for g, (n, h) in data["graphs"].items()
                if not is_bookkeeping(g)
            }
        except (KeyError, TypeError, ValueError, AttributeError):
            self.graphs = None

    def refresh(self, store: ox.Store, changes: Changes) -> None:
        """Bring the counts and hashes up to date after `changes` (a full scan when unknown)."""
        if self.graphs is None or changes.everything:
            self.graphs = scan_store(store)
            return
        for name in sorted(changes.graphs):
            if is_bookkeeping(name):
                continue
            summed = scan_graph(store, ox.NamedNode(name) if name else ox.DefaultGraph())
            if summed.triples:
                self.graphs[name] = summed
            else:
                self.graphs.pop(name, None)

    def rescan(self, store: ox.Store) -> None:
        """Forget what was kept and scan the whole store (`verify`)."""
        self.graphs = scan_store(store)

    def fingerprint(self, mode: str, effective: str | None) -> dict[str, Any] | None:
        """The status.json `fingerprint` in `mode` (counts or full), or None when nothing is known."""
        if self.graphs is None:
            return None
        return build_fingerprint(
            {g: (s.triples, s.hash) for g, s in self.graphs.items()}, mode, effective, now_iso()
        )

    def save(self) -> None:
        """Write the kept state with the signature of the (closed) store's files; atomic."""
        if self.graphs is None or not self.db_dir.is_dir():
            self.path.unlink(missing_ok=True)
            return
        data = {
            "version": FORMAT_VERSION,
            "files": files_signature(self.db_dir),
            "graphs": {g: [s.triples, s.hash] for g, s in sorted(self.graphs.items())},
        }
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, self.path)
