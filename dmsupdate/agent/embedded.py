"""The embedded backend: a pyoxigraph store at `dblocation/dbname`, exactly-once under kill -9.

The ledger of applied keys lives in the store itself (graph
`urn:x-dms-update:ledger`) and is written in the same transaction as the data
of each operation:

- `add`: one `load` of the data followed by the ledger triples (TriG / N-Quads
  suffix, so the parser puts them in the ledger graph) — one transaction;
- `drop`, `update`, `postproc`: one SPARQL Update request holding the operation
  and an `INSERT DATA` into the ledger graph — one transaction;
- `replace`: the data is first parsed into a scratch in-memory store (so a bad
  file fails before anything changes), then the graph is dropped and the data
  loaded with its ledger triples. A crash between the two leaves the key out of
  the ledger, so the next run replaces the graph again: same result, since a
  replace does not depend on what the graph held;
- image and dump: built in a directory beside the database with a fresh ledger,
  then swapped in by renames (see dmsupdate.agent.images).
"""

from __future__ import annotations

import gc
import shutil
from collections.abc import Iterable
from pathlib import Path

import pyoxigraph as ox

from dmsupdate.agent.errors import AgentError, OperationFailed
from dmsupdate.agent.images import (
    LEDGER_GRAPH,
    ImageError,
    recover_swap,
    sibling,
    swap_in,
    unpack_image,
    unpack_limit,
)
from dmsupdate.agent.kept_fingerprint import Changes
from dmsupdate.agent.screening import read_update, screen_rdfxml
from dmsupdate.agent.update_scope import touched_graphs
from dmsupdate.state.keys import EffectiveTime, InvalidKey
from dmsupdate.state.plan import LedgerState, PlanEntry
from dmsupdate.state.stores import ObjectInfo, ObjectStore, StoreError, open_verified

AGENT = ox.NamedNode("urn:x-dms-update:agent")
APPLIED = ox.NamedNode("urn:x-dms-update:applied")
BOOTSTRAP = ox.NamedNode("urn:x-dms-update:bootstrap")
BASELINE = ox.NamedNode("urn:x-dms-update:baseline")

RDF_FORMATS = {
    "ttl": ox.RdfFormat.TURTLE,
    "nt": ox.RdfFormat.N_TRIPLES,
    "nq": ox.RdfFormat.N_QUADS,
    "rdf": ox.RdfFormat.RDF_XML,
}


def ledger_quads(keys: Iterable[str]) -> list[ox.Quad]:
    """The ledger quads recording `keys` as applied."""
    return [ox.Quad(AGENT, APPLIED, ox.Literal(k), LEDGER_GRAPH) for k in keys]


def _nquads(quads: Iterable[ox.Quad]) -> bytes:
    return "".join(f"{q.subject} {q.predicate} {q.object} {q.graph_name} .\n" for q in quads).encode()


def _trig(quads: list[ox.Quad]) -> bytes:
    body = "".join(f"{q.subject} {q.predicate} {q.object} .\n" for q in quads)
    return f"\nGRAPH {LEDGER_GRAPH} {{\n{body}}}\n".encode()


def _insert_data(quads: list[ox.Quad]) -> str:
    body = "".join(f"{q.subject} {q.predicate} {q.object} .\n" for q in quads)
    return f"INSERT DATA {{ GRAPH {LEDGER_GRAPH} {{\n{body}}} }}"


def _graph(entry: PlanEntry) -> ox.NamedNode:
    try:
        return ox.NamedNode(entry.graph or "")
    except ValueError as exc:
        raise OperationFailed(f"graph name {entry.graph!r} is not a valid IRI") from exc


def _read(source: ObjectStore, info: ObjectInfo | None) -> bytes:
    if info is None:
        raise OperationFailed("no object information for this key")
    try:
        with open_verified(source, info) as stream:
            return stream.read()
    except (OSError, EOFError) as exc:
        raise OperationFailed(f"cannot read {info.key}: {exc}") from exc


def _ledger_values(store: ox.Store, predicate: ox.NamedNode) -> list[str]:
    return [
        q.object.value
        for q in store.quads_for_pattern(AGENT, predicate, None, LEDGER_GRAPH)
        if isinstance(q.object, ox.Literal)
    ]


class EmbeddedBackend:
    """Applies plan entries to the store at `db_dir`; the store is opened on first use and closed by `close`."""

    def __init__(self, db_dir: Path) -> None:
        self.db_dir = db_dir
        self._store: ox.Store | None = None
        # What this backend's operations may have changed (read by the kept fingerprint).
        self.changes = Changes()

    @property
    def store(self) -> ox.Store:
        if self._store is None:
            recover_swap(self.db_dir)
            try:
                self._store = ox.Store(str(self.db_dir))
            except OSError as exc:
                raise AgentError(f"cannot open the store at {self.db_dir}: {exc}") from exc
        return self._store

    def close(self) -> None:
        """Release the store (RocksDB lock and files) so it can be swapped, packed or reopened."""
        self._store = None
        gc.collect()

    def quad_count(self) -> int:
        """Quads the store holds besides the agent's ledger (status.json `store.quads`; a full scan)."""
        store = self.store
        return len(store) - sum(1 for _ in store.quads_for_pattern(None, None, None, LEDGER_GRAPH))

    def foreign_database(self) -> bool:
        """True when something that is not an agent-built store occupies the database location.

        `update` refuses to replace it (it may hold data nobody published);
        `rebuild` replaces it on purpose.
        """
        recover_swap(self.db_dir)
        if not self.db_dir.is_dir() or not any(self.db_dir.iterdir()):
            return False
        return self.ledger_state().baseline is None

    def ledger_state(self) -> LedgerState:
        """What the store's ledger says was applied since its bootstrap."""
        recover_swap(self.db_dir)
        if not self.db_dir.is_dir() or not any(self.db_dir.iterdir()):
            return LedgerState(baseline=None)
        store = self.store
        baseline = None
        bootstrap_key = None
        for text in _ledger_values(store, BASELINE):
            try:
                baseline = EffectiveTime.parse_text(text)
            except InvalidKey:
                baseline = None
        for text in _ledger_values(store, BOOTSTRAP):
            bootstrap_key = text
        applied = frozenset(_ledger_values(store, APPLIED))
        return LedgerState(baseline=baseline, applied=applied, bootstrap_key=bootstrap_key)

    def settle(self, keys: list[str]) -> None:
        """Record keys as done without running anything (they were superseded)."""
        if keys:
            self.store.extend(ledger_quads(keys))

    def apply(self, entry: PlanEntry, source: ObjectStore) -> None:
        """Run one update operation and record it (and the keys it settles) in the same transaction."""
        record = ledger_quads((entry.key, *entry.settles))
        store = self.store
        if entry.op in ("drop", "add", "replace"):
            self.changes.graph(entry.graph or "")
        try:
            if entry.op == "drop":
                store.update(f"DROP SILENT GRAPH {_graph(entry)} ;\n{_insert_data(record)}")
            elif entry.op in ("update", "postproc"):
                self._sparql_update(read_update(source, entry.info), record)
            elif entry.op in ("add", "replace"):
                self._load(entry, _read(source, entry.info), record)
            else:
                raise OperationFailed(f"{entry.op} is not an update operation")
        except SyntaxError as exc:
            raise OperationFailed(f"{entry.op} {entry.key}: {exc}") from exc
        except (OSError, ValueError) as exc:
            raise OperationFailed(f"{entry.op} {entry.key}: {exc}") from exc

    def _sparql_update(self, text: str, record: list[ox.Quad]) -> None:
        insert = _insert_data(record)
        self.changes.these(touched_graphs(text))
        try:
            self.store.update(f"{text}\n;\n{insert}")
            return
        except SyntaxError:
            pass
        try:
            # The update already ends with ";" (or is empty): append without a separator.
            self.store.update(f"{text}\n{insert}")
            return
        except SyntaxError:
            pass
        self.store.update(text)  # raises the update's own syntax error, having changed nothing
        raise OperationFailed("the SPARQL update could not be combined with its ledger record")

    def _load(self, entry: PlanEntry, body: bytes, record: list[ox.Quad]) -> None:
        fmt = RDF_FORMATS.get(entry.format.removesuffix(".gz") if entry.format else "")
        if fmt is None:
            raise OperationFailed(f"no RDF syntax for format {entry.format!r}")
        graph = _graph(entry)
        store = self.store
        if fmt == ox.RdfFormat.RDF_XML:
            screen_rdfxml(body, entry.key)
            # RDF/XML cannot take a suffix: parse it, then add data and ledger in one transaction.
            quads = [
                ox.Quad(t.subject, t.predicate, t.object, graph) for t in ox.parse(input=body, format=fmt)
            ]
            if entry.op == "replace":
                store.remove_graph(graph)
            store.extend([*quads, *record])
            return
        if entry.op == "replace":
            # Parse before touching the store, so a bad file leaves the graph as it was.
            for _ in ox.parse(input=body, format=fmt):
                pass
            # Its own transaction: a crash before the load leaves the key unrecorded, so it runs again.
            store.remove_graph(graph)
        if fmt == ox.RdfFormat.TURTLE:
            # A Turtle document is a TriG document; the suffix puts the ledger
            # triples in their graph within the same load (one transaction).
            store.load(input=body + _trig(record), format=ox.RdfFormat.TRIG, to_graph=graph)
        else:
            # N-Triples lines are N-Quads lines; to_graph applies to the triples only.
            store.load(input=body + b"\n" + _nquads(record), format=ox.RdfFormat.N_QUADS, to_graph=graph)

    def install(self, entry: PlanEntry, source: ObjectStore, opt: ObjectInfo | None = None) -> None:
        """Build a new database from an image or dump beside the current one, then swap it in."""
        if entry.info is None:
            raise OperationFailed("no object information for this key")
        self.changes.all()
        self.close()
        recover_swap(self.db_dir)
        incoming = sibling(self.db_dir, "incoming")
        shutil.rmtree(incoming, ignore_errors=True)
        self.db_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open_verified(source, entry.info, decompress=entry.op == "dump") as stream:
                if entry.op == "image":
                    store_dir = unpack_image(stream, incoming, unpack_limit(entry.info.size))
                    new = ox.Store(str(store_dir))
                    new.remove_graph(LEDGER_GRAPH)  # an image may carry its builder's ledger
                else:
                    store_dir = incoming
                    new = ox.Store(str(store_dir))
                    new.bulk_load(input=stream, format=ox.RdfFormat.N_QUADS)
                    stream.read(1)  # reach the end so size/MD5 are verified
                new.remove_graph(LEDGER_GRAPH)
                new.extend(
                    [
                        ox.Quad(AGENT, BOOTSTRAP, ox.Literal(entry.key), LEDGER_GRAPH),
                        ox.Quad(AGENT, BASELINE, ox.Literal(entry.effective.path), LEDGER_GRAPH),
                    ]
                )
                del new  # the last reference: the store closes here, before the swap
        except (ImageError, StoreError) as exc:
            shutil.rmtree(incoming, ignore_errors=True)
            raise OperationFailed(f"{entry.op} {entry.key}: {exc}") from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            shutil.rmtree(incoming, ignore_errors=True)
            raise OperationFailed(f"{entry.op} {entry.key}: {exc}") from exc
        except BaseException:
            shutil.rmtree(
                incoming, ignore_errors=True
            )  # whatever failed, no half-built store stays beside the database
            raise
        swap_in(store_dir, self.db_dir)
        shutil.rmtree(incoming, ignore_errors=True)
