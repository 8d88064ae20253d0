"""Replica fingerprints (DESIGN §5b): what a store holds, in a form every store computes alike.

A triple's *line* is its three terms in canonical N-Triples joined by one space
(UTF-8, no final ` .`): IRIs `<…>`, literals escaped as RDF 1.2 canonical
N-Triples (`\\"`, `\\\\`, `\\n`, `\\r`, `\\t`, `\\b`, `\\f`, other controls as
`\\uXXXX`), language tags lower-cased, `xsd:string` left out, every blank node
`_:b`. A graph's hash is the sum of the first 16 bytes of sha256(line) (big
endian) over its triples, modulo 2**128, as 32 hex digits: order-independent,
so a graph can be hashed by any scan and kept up to date by adding and
subtracting lines. `total.hash` is sha256 over `IRI\\tN\\thash\\n`, graphs
sorted by IRI ('' is the default graph).

Graphs holding no triple are left out of `graphs` and of the total: stores
differ in whether they keep an empty named graph, and a SPARQL endpoint cannot
list one. The agent's own graphs (`urn:x-dms-update:…`) are never counted.

Both halves use this module: the agent to build a fingerprint, the control
plane to check a reported one (`parse_fingerprint`) and to compare two
(`differing_graphs`).
"""

from __future__ import annotations

import hashlib
from array import array
from dataclasses import dataclass
from operator import methodcaller
from typing import Any

BOOKKEEPING_PREFIX = "urn:x-dms-update:"
XSD_STRING = "http://www.w3.org/2001/XMLSchema#string"
RDF_LANG_STRING = "http://www.w3.org/1999/02/22-rdf-syntax-ns#langString"
BLANK = "_:b"
MODES = ("counts", "full")
MASK = (1 << 128) - 1
EMPTY_HASH = "0" * 32

_ESCAPES = {
    ord('"'): '\\"',
    ord("\\"): "\\\\",
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
    ord("\b"): "\\b",
    ord("\f"): "\\f",
    **{c: f"\\u{c:04X}" for c in (*range(0x00, 0x08), 0x0B, *range(0x0E, 0x20), 0x7F)},
}
_DIGEST = methodcaller("digest")


def is_bookkeeping(graph: str) -> bool:
    """True for the agent's own graphs, which no fingerprint covers."""
    return graph.startswith(BOOKKEEPING_PREFIX)


def iri(value: str) -> str:
    """An IRI term: `<value>`."""
    return f"<{value}>"


def literal(value: str, language: str | None = None, datatype: str | None = None) -> str:
    """A literal term in canonical N-Triples (escaped, language lower-cased, xsd:string left out)."""
    quoted = f'"{value.translate(_ESCAPES)}"'
    if language:
        return f"{quoted}@{language.lower()}"
    if datatype and datatype not in (XSD_STRING, RDF_LANG_STRING):
        return f"{quoted}^^<{datatype}>"
    return quoted


def triple_line(subject: str, predicate: str, obj: str) -> str:
    """A triple's line: its three canonical terms joined by one space."""
    return f"{subject} {predicate} {obj}"


def line_value(line: bytes) -> int:
    """What one line adds to its graph's hash: the first 16 bytes of sha256(line), big endian."""
    return int.from_bytes(hashlib.sha256(line).digest()[:16], "big")


def lines_sum(lines: list[bytes]) -> int:
    """The sum of line_value over `lines` (not reduced), with no Python-level step per line.

    The digests are joined and read as big-endian 64-bit words: the first two of
    each 32-byte digest are the high and low halves of its 128-bit value.
    """
    words = array("Q", b"".join(map(_DIGEST, map(hashlib.sha256, lines))))
    if array("Q", [1]).tobytes()[0] == 1:  # little-endian machine: read the words big endian
        words.byteswap()
    return (sum(words[0::4]) << 64) + sum(words[1::4])


def hash_hex(value: int) -> str:
    """A graph hash as 32 lower-case hex digits."""
    return f"{value & MASK:032x}"


@dataclass
class GraphSum:
    """A graph's triple count and hash sum, kept while scanning or updating it."""

    triples: int = 0
    value: int = 0

    def add_lines(self, lines: list[bytes]) -> None:
        self.triples += len(lines)
        self.value = (self.value + lines_sum(lines)) & MASK

    @property
    def hash(self) -> str:
        return hash_hex(self.value)


def total_hash(graphs: dict[str, tuple[int, str]]) -> str:
    """`total.hash`: sha256 over `IRI\\tN\\thash\\n`, one line per graph, sorted by IRI."""
    text = "".join(f"{g}\t{n}\t{h}\n" for g, (n, h) in sorted(graphs.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def build_fingerprint(
    graphs: dict[str, tuple[int, str | None]], mode: str, effective: str | None, computed_at: str
) -> dict[str, Any]:
    """The status.json `fingerprint` object from each graph's (triples, hash or None)."""
    kept = {g: (n, h) for g, (n, h) in graphs.items() if n > 0 and not is_bookkeeping(g)}
    full = mode == "full" and all(h is not None for _, h in kept.values())
    hashes: dict[str, tuple[int, str]] = {g: (n, h) for g, (n, h) in kept.items() if h is not None}
    return {
        "effectiveDate": effective,
        "computedAt": computed_at,
        "mode": "full" if full else "counts",
        "graphs": {g: {"triples": n, "hash": h if full else None} for g, (n, h) in sorted(kept.items())},
        "total": {
            "triples": sum(n for n, _ in kept.values()),
            "hash": total_hash(hashes) if full else None,
        },
    }


class InvalidFingerprint(ValueError):
    """A reported fingerprint that does not have the shape of DESIGN §5b."""


def _is_hex(value: Any, length: int) -> bool:
    return isinstance(value, str) and len(value) == length and all(c in "0123456789abcdef" for c in value)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


MAX_GRAPHS = 100_000


def parse_fingerprint(value: Any) -> dict[str, Any] | None:
    """Check a reported fingerprint's shape; return it, or raise InvalidFingerprint naming the fault."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidFingerprint("fingerprint must be an object or null")
    for name in ("effectiveDate", "computedAt"):
        if value.get(name) is not None and (not isinstance(value[name], str) or len(value[name]) > 64):
            raise InvalidFingerprint(f"fingerprint.{name} must be a short string or null")
    if value.get("mode") not in MODES:
        raise InvalidFingerprint("fingerprint.mode must be 'counts' or 'full'")
    graphs = value.get("graphs")
    if not isinstance(graphs, dict) or len(graphs) > MAX_GRAPHS:
        raise InvalidFingerprint("fingerprint.graphs must be an object of graph IRI to {triples, hash}")
    for name, entry in graphs.items():
        if len(name) > 4096 or not isinstance(entry, dict) or not _whole(entry.get("triples")):
            raise InvalidFingerprint(f"fingerprint.graphs[{name[:200]!r}] needs a whole number of triples")
        if entry.get("hash") is not None and not _is_hex(entry["hash"], 32):
            raise InvalidFingerprint(f"fingerprint.graphs[{name[:200]!r}].hash must be 32 hex digits or null")
    total = value.get("total")
    if not isinstance(total, dict) or not _whole(total.get("triples")):
        raise InvalidFingerprint("fingerprint.total needs a whole number of triples")
    if total.get("hash") is not None and not _is_hex(total["hash"], 64):
        raise InvalidFingerprint("fingerprint.total.hash must be 64 hex digits or null")
    return value


@dataclass(frozen=True)
class GraphDifference:
    """One graph two fingerprints disagree on: triples and hash on each side (None: absent or unknown)."""

    graph: str
    triples: int
    expected_triples: int
    hash: str | None
    expected_hash: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "graph": self.graph,
            "triples": self.triples,
            "expected_triples": self.expected_triples,
            "hash": self.hash,
            "expected_hash": self.expected_hash,
        }


def differing_graphs(found: dict[str, Any], expected: dict[str, Any]) -> list[GraphDifference]:
    """The graphs where `found` differs from `expected`: counts always, hashes where both have them."""
    mine, theirs = found.get("graphs") or {}, expected.get("graphs") or {}
    differences = []
    for graph in sorted(set(mine) | set(theirs)):
        a, b = mine.get(graph) or {}, theirs.get(graph) or {}
        n, m = int(a.get("triples") or 0), int(b.get("triples") or 0)
        h, k = a.get("hash"), b.get("hash")
        if n != m or (h is not None and k is not None and h != k):
            differences.append(GraphDifference(graph, n, m, h, k))
    return differences


def agree(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """True when two fingerprints show the same data as far as both tell (counts, and hashes when both have them)."""
    return not differing_graphs(a, b)
