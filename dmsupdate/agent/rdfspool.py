"""What the SPARQL backend sends, on disk first: a body with a known length, and what it holds.

An object is decompressed (and RDF/XML screened) into a temporary file, so it
can be sent with a `Content-Length` and sent again (digest auth answers the
first attempt with a challenge). Memory stays bounded whatever the object's
size; disk use is the decompressed content, removed when the operation ends.

For `verify: counts` the file is then parsed once for its facts: how many
distinct triples it holds (each graph's, for a dump), how many of them hold a
blank node (always new to a store: a blank node of a file is never one the
store already has), and a sample of triples without blank nodes to look for
afterwards. Distinct triples are counted by a 64-bit digest of their
N-Triples line (a collision, about one in 10^19 per pair, would undercount by
one): in memory up to `MEMORY_DIGESTS`, past that in a temporary SQLite file.
"""

from __future__ import annotations

import random
import sqlite3
import tempfile
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, BinaryIO

import pyoxigraph as ox

CHUNK = 1 << 20
MEMORY_DIGESTS = 2_000_000
SAMPLE = 16
OPEN_FILES = 64
FORMATS = {
    "application/n-triples": ox.RdfFormat.N_TRIPLES,
    "text/turtle": ox.RdfFormat.TURTLE,
    "application/rdf+xml": ox.RdfFormat.RDF_XML,
    "application/n-quads": ox.RdfFormat.N_QUADS,
}


def spool(stream: BinaryIO) -> IO[bytes]:
    """Copy a stream into a new temporary file (removed when closed); return it rewound."""
    out = tempfile.TemporaryFile(prefix="dms-update-")
    try:
        while chunk := stream.read(CHUNK):
            out.write(chunk)
        out.flush()
        out.seek(0)
    except BaseException:
        out.close()
        raise
    return out


class DistinctCounter:
    """Counts distinct lines by digest, per group; bounded memory (spills to SQLite)."""

    def __init__(self) -> None:
        self._seen: set[int] = set()
        self._db: sqlite3.Connection | None = None
        self._spill: IO[bytes] | None = None

    def add(self, line: str) -> bool:
        """True when `line` was not seen before (64-bit digests: Python's string hash, stable within a run)."""
        digest = hash(line)
        if self._db is None:
            if digest in self._seen:
                return False
            self._seen.add(digest)
            if len(self._seen) >= MEMORY_DIGESTS:
                self._to_disk()
            return True
        cursor = self._db.execute("INSERT OR IGNORE INTO seen (d) VALUES (?)", (digest,))
        return cursor.rowcount == 1

    def _to_disk(self) -> None:
        self._spill = tempfile.NamedTemporaryFile(prefix="dms-update-distinct-", suffix=".sqlite")
        self._db = sqlite3.connect(self._spill.name)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE seen (d INTEGER PRIMARY KEY) WITHOUT ROWID")
        self._db.executemany("INSERT INTO seen (d) VALUES (?)", ((d,) for d in self._seen))
        self._seen = set()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
        if self._spill is not None:
            self._spill.close()


@dataclass
class GraphFacts:
    """What one graph of a file holds: distinct triples, those with a blank node, a sample of the others."""

    triples: int = 0
    blank: int = 0
    sample: list[str] = field(default_factory=list)
    _plain_seen: int = 0


@dataclass
class ContentFacts:
    """Facts of a spooled file, per graph (`None` for the triples of a triples file; `""` for a dump's default graph)."""

    graphs: dict[str | None, GraphFacts] = field(default_factory=dict)

    @property
    def whole(self) -> GraphFacts:
        return self.graphs.get(None) or GraphFacts()


def read_facts(body: IO[bytes], media: str, seed: str) -> ContentFacts:
    """Parse a spooled file once; its distinct triples (per graph for N-Quads), blank-node ones and a sample."""
    body.seek(0)
    rng = random.Random(seed)
    counter = DistinctCounter()
    facts = ContentFacts()
    graphs = facts.graphs
    add = counter.add
    quads = media == "application/n-quads"
    try:
        for item in ox.parse(body, FORMATS[media]):
            if quads:
                g = item.graph_name  # type: ignore[union-attr]
                graph: str | None = "" if isinstance(g, ox.DefaultGraph) else g.value  # type: ignore[union-attr]
                line = f"{item.subject} {item.predicate} {item.object}"
                new = add(f"{graph}\t{line}")
            else:
                graph = None
                line = str(item)
                new = add(line)
            if not new:
                continue
            gf = graphs.get(graph)
            if gf is None:
                gf = graphs[graph] = GraphFacts()
            gf.triples += 1
            s, o = item.subject, item.object
            if type(s) is not ox.NamedNode or not (type(o) is ox.NamedNode or type(o) is ox.Literal):
                gf.blank += 1  # a blank node (or an RDF-star quoted triple) in subject or object
                continue
            gf._plain_seen += 1  # reservoir sampling over the triples without blank nodes
            if len(gf.sample) < SAMPLE:
                gf.sample.append(line)
            else:
                k = rng.randrange(gf._plain_seen)
                if k < SAMPLE:
                    gf.sample[k] = line
    finally:
        counter.close()
        body.seek(0)
    return facts


def graph_files(body: IO[bytes]) -> Iterator[tuple[str, IO[bytes]]]:
    """Split a spooled N-Quads file into one N-Triples file per graph (`""`: the default graph).

    Each graph's file is yielded open and rewound, in the order the graphs first
    appear; all are removed at the end. Disk use is the size of the quads file
    again; at most `OPEN_FILES` files are open at once while splitting.
    """
    body.seek(0)
    with tempfile.TemporaryDirectory(prefix="dms-update-graphs-") as folder:
        paths: dict[str, str] = {}
        open_files: OrderedDict[str, IO[bytes]] = OrderedDict()
        try:
            for q in ox.parse(body, ox.RdfFormat.N_QUADS):
                g = "" if isinstance(q.graph_name, ox.DefaultGraph) else q.graph_name.value  # type: ignore[union-attr]
                out = open_files.get(g)
                if out is None:
                    if len(open_files) >= OPEN_FILES:
                        open_files.popitem(last=False)[1].close()
                    path = paths.setdefault(g, f"{folder}/{len(paths)}.nt")
                    out = open_files[g] = open(path, "ab")  # noqa: SIM115 (closed when evicted or at the end)
                else:
                    open_files.move_to_end(g)
                out.write(f"{q.subject} {q.predicate} {q.object} .\n".encode())
        finally:
            for out in open_files.values():
                out.close()
            body.seek(0)
        for g, path in paths.items():
            with open(path, "rb") as graph_file:
                yield g, graph_file
