"""Unit tests of the replica fingerprint (DESIGN §5b): canonical lines, graph hashes, the total.

Expected lines are written out here; expected hashes are computed here with hashlib
from those lines, never with the code under test.
"""

from __future__ import annotations

import hashlib

import pytest

from dmsupdate.state.fingerprint import (
    BLANK,
    GraphSum,
    InvalidFingerprint,
    build_fingerprint,
    differing_graphs,
    iri,
    literal,
    parse_fingerprint,
    total_hash,
    triple_line,
)

S, P = "<http://example.org/s>", "<http://example.org/p>"


def first16(line: str) -> int:
    return int.from_bytes(hashlib.sha256(line.encode("utf-8")).digest()[:16], "big")


def graph_hex(*lines: str) -> str:
    return f"{sum(first16(line) for line in lines) % 2**128:032x}"


def test_literal_escaping_follows_canonical_n_triples():
    value = 'say "hi"\\ \n\r\t\b\f \x00\x07\x0b\x1f\x7f café'
    assert literal(value) == r'"say \"hi\"\\ \n\r\t\b\f \u0000\u0007\u000B\u001F\u007F café"'


def test_language_tags_are_lower_cased():
    assert literal("Colour", language="EN-GB") == '"Colour"@en-gb'


def test_xsd_string_is_left_out_and_other_datatypes_kept():
    assert literal("x", datatype="http://www.w3.org/2001/XMLSchema#string") == '"x"'
    assert (
        literal("01", datatype="http://www.w3.org/2001/XMLSchema#integer")
        == '"01"^^<http://www.w3.org/2001/XMLSchema#integer>'
    )


def test_a_line_joins_three_terms_with_one_space():
    assert triple_line(iri("http://example.org/s"), iri("http://example.org/p"), BLANK) == f"{S} {P} _:b"


def test_graph_hash_is_the_sum_of_the_first_16_bytes_of_each_line_digest():
    lines = [f'{S} {P} "a"', f'{S} {P} "b"@en', f"_:b {P} _:b"]
    found = GraphSum()
    found.add_lines([line.encode() for line in lines])
    assert found.triples == 3
    assert found.hash == graph_hex(*lines)


def test_graph_hash_ignores_order_and_counts_equal_blank_node_lines_twice():
    line = f"_:b {P} {S}"
    once, twice = GraphSum(), GraphSum()
    once.add_lines([line.encode()])
    twice.add_lines([line.encode(), line.encode()])
    assert twice.triples == 2
    assert twice.hash == f"{2 * first16(line) % 2**128:032x}"
    assert twice.hash != once.hash
    a, b = GraphSum(), GraphSum()
    a.add_lines([b"x", b"y", b"z"])
    b.add_lines([b"z"])
    b.add_lines([b"y", b"x"])
    assert a.hash == b.hash == graph_hex("x", "y", "z")


def test_graph_hash_wraps_modulo_2_to_the_128():
    lines = [f"line {i}" for i in range(300)]
    found = GraphSum()
    found.add_lines([line.encode() for line in lines])
    assert sum(first16(line) for line in lines) >= 2**128  # the sum does wrap here
    assert found.hash == graph_hex(*lines)


def test_an_empty_graph_hashes_to_zero():
    assert GraphSum().hash == "0" * 32


def test_total_hash_covers_graphs_sorted_by_iri_with_the_default_graph_as_empty_string():
    graphs = {
        "http://example.org/g2": (1, "ab" * 16),
        "": (2, "cd" * 16),
        "http://example.org/g1": (3, "ef" * 16),
    }
    text = f"\t2\t{'cd' * 16}\nhttp://example.org/g1\t3\t{'ef' * 16}\nhttp://example.org/g2\t1\t{'ab' * 16}\n"
    assert total_hash(graphs) == hashlib.sha256(text.encode()).hexdigest()
    assert total_hash({}) == hashlib.sha256(b"").hexdigest()


def test_fingerprint_leaves_out_bookkeeping_and_empty_graphs():
    fp = build_fingerprint(
        {
            "": (2, "cd" * 16),
            "urn:x-dms-update:ledger": (5, "11" * 16),
            "http://example.org/empty": (0, "0" * 32),
        },
        "full",
        "2026-12-01/09-00-00-000000000",
        "2026-12-01T09:00:01Z",
    )
    assert fp["graphs"] == {"": {"triples": 2, "hash": "cd" * 16}}
    assert fp["total"] == {
        "triples": 2,
        "hash": hashlib.sha256(f"\t2\t{'cd' * 16}\n".encode()).hexdigest(),
    }
    assert fp["mode"] == "full"


def test_counts_mode_reports_no_hashes():
    fp = build_fingerprint({"http://example.org/g": (4, "cd" * 16)}, "counts", None, "t")
    assert fp["graphs"] == {"http://example.org/g": {"triples": 4, "hash": None}}
    assert fp["total"] == {"triples": 4, "hash": None}
    assert fp["mode"] == "counts"


def test_differing_graphs_compare_counts_always_and_hashes_when_both_have_them():
    full = build_fingerprint({"g1": (2, "aa" * 16), "g2": (3, "bb" * 16)}, "full", None, "t")
    other = build_fingerprint({"g1": (2, "aa" * 16), "g2": (3, "cc" * 16)}, "full", None, "t")
    counts = build_fingerprint({"g1": (2, None), "g2": (3, None)}, "counts", None, "t")
    fewer = build_fingerprint({"g1": (2, None)}, "counts", None, "t")
    assert [d.graph for d in differing_graphs(full, other)] == ["g2"]
    assert differing_graphs(full, counts) == []
    (gone,) = differing_graphs(fewer, full)
    assert (gone.graph, gone.triples, gone.expected_triples) == ("g2", 0, 3)


@pytest.mark.parametrize(
    "bad",
    [
        [],
        {"mode": "fast", "graphs": {}, "total": {"triples": 0}},
        {"mode": "full", "graphs": {"g": {"triples": -1}}, "total": {"triples": 0}},
        {"mode": "full", "graphs": {"g": {"triples": 1, "hash": "XYZ"}}, "total": {"triples": 1}},
        {"mode": "full", "graphs": {}, "total": {"triples": 0, "hash": "00"}},
        {"mode": "counts", "graphs": {}},
    ],
)
def test_malformed_fingerprints_are_refused(bad):
    with pytest.raises(InvalidFingerprint):
        parse_fingerprint(bad)
