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
looked at again at the end of the run, each once. In `counts` mode (the
default) that is a count, which the store answers from its index without
reading a term; the graph's hash is then marked unknown, and a `full`
fingerprint (`verify`, or `fingerprint: full`) scans the graphs whose hash is
unknown.
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

from dmsupdate.agent.fingerprint_scan import count_graph, count_store, scan_graph, scan_store
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
        self.unhashed: set[str] = set()  # graphs whose count is current and whose hash is not known

    def take(self) -> None:
        """Read the kept state if the store's files still match it, and delete the file (see the module doc)."""
        self.graphs = None
        self.unhashed = set()
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
            graphs = {g: (int(n), h) for g, (n, h) in data["graphs"].items() if not is_bookkeeping(g)}
            self.graphs = {g: GraphSum(n, int(h, 16) if h is not None else 0) for g, (n, h) in graphs.items()}
        except (KeyError, TypeError, ValueError, AttributeError):
            self.graphs = None
            return
        self.unhashed = {g for g, (_, h) in graphs.items() if h is None}

    def refresh(self, store: ox.Store, changes: Changes, mode: str) -> None:
        """Bring the counts (and in `full` mode the hashes) up to date after `changes`."""
        if self.graphs is None or changes.everything:
            if mode == "full":
                self.rescan(store)
            else:
                self.graphs = {g: GraphSum(n) for g, n in count_store(store).items()}
                self.unhashed = set(self.graphs)
            return
        for name in sorted(changes.graphs):
            if is_bookkeeping(name):
                continue
            if mode == "full":
                self._set(name, scan_graph(store, _graph_term(name)))
            else:
                self._set(name, GraphSum(count_graph(store, _graph_term(name))), hashed=False)
        if mode == "full":
            for name in sorted(self.unhashed):
                self._set(name, scan_graph(store, _graph_term(name)))

    def _set(self, name: str, summed: GraphSum, hashed: bool = True) -> None:
        assert self.graphs is not None
        if summed.triples:
            self.graphs[name] = summed
        else:
            self.graphs.pop(name, None)
        if hashed or not summed.triples:
            self.unhashed.discard(name)
        else:
            self.unhashed.add(name)

    def rescan(self, store: ox.Store) -> None:
        """Forget what was kept and scan the whole store (`verify`)."""
        self.graphs = scan_store(store)
        self.unhashed = set()

    def fingerprint(self, mode: str, effective: str | None) -> dict[str, Any] | None:
        """The status.json `fingerprint` in `mode` (counts or full), or None when nothing is known."""
        if self.graphs is None:
            return None
        return build_fingerprint(
            {g: (s.triples, None if g in self.unhashed else s.hash) for g, s in self.graphs.items()},
            mode,
            effective,
            now_iso(),
        )

    def save(self) -> None:
        """Write the kept state with the signature of the (closed) store's files; atomic."""
        if self.graphs is None or not self.db_dir.is_dir():
            self.path.unlink(missing_ok=True)
            return
        data = {
            "version": FORMAT_VERSION,
            "files": files_signature(self.db_dir),
            "graphs": {
                g: [s.triples, None if g in self.unhashed else s.hash] for g, s in sorted(self.graphs.items())
            },
        }
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, self.path)


def _graph_term(name: str) -> ox.NamedNode | ox.DefaultGraph:
    return ox.NamedNode(name) if name else ox.DefaultGraph()
