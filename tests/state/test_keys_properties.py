"""Property tests of the key layout: formatting round-trips, parsing never crashes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dmsupdate.state.keys import (
    FORMATS_BY_OP,
    GRAPH_OPS,
    LATEST_NANOS,
    NANOS,
    EffectiveTime,
    InvalidKey,
    format_key,
    parse_key,
)

labels = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}", fullmatch=True)
times = st.integers(min_value=0, max_value=LATEST_NANOS - 1).map(EffectiveTime)
# Dates a key can spell but a 64-bit count of nanoseconds cannot hold (after 2262-04-11).
unrepresentable = st.integers(min_value=LATEST_NANOS, max_value=253402300799 * NANOS).map(EffectiveTime)
args = st.text(min_size=1, max_size=80)


@st.composite
def written_keys(draw):
    op = draw(st.sampled_from(sorted(FORMATS_BY_OP)))
    fmt = draw(st.sampled_from(FORMATS_BY_OP[op])) or None
    arg = draw(args) if op in GRAPH_OPS or op == "postproc" else None
    return draw(times), draw(labels), op, arg, fmt


@given(written_keys())
@settings(max_examples=400)
def test_formatted_keys_parse_back_to_the_same_fields(fields):
    effective, label, op, arg, fmt = fields
    key = format_key(effective, label, op, arg, fmt)
    parsed = parse_key(key)
    assert (parsed.effective, parsed.label, parsed.op, parsed.arg) == (effective, label, op, arg)
    assert parsed.format == (fmt or ("tgz" if op == "image" else "nq.gz" if op == "dump" else None))
    assert format_key(parsed.effective, parsed.label, parsed.op, parsed.arg, parsed.format) == key


@given(st.text(max_size=300))
@settings(max_examples=1000)
def test_parsing_arbitrary_text_either_succeeds_or_says_invalid(text):
    try:
        parsed = parse_key(text)
    except InvalidKey:
        return
    assert parsed.key == text


@given(st.lists(times, min_size=2, max_size=20))
def test_key_time_segments_sort_as_the_times_do(values):
    paths = sorted(values, key=lambda t: t.path)
    assert [t.nanos for t in paths] == sorted(t.nanos for t in values)


@given(times)
def test_effective_time_text_forms_round_trip(t):
    assert EffectiveTime.parse_text(t.path) == t
    assert EffectiveTime.parse_text(t.isoformat()) == t


@given(unrepresentable)
def test_keys_dated_after_2262_are_invalid_never_an_overflow(t):
    key = f"updates/{t.path}/pub_update.ru"
    try:
        parse_key(key)
    except InvalidKey as exc:
        assert "2262" in str(exc)
    else:
        raise AssertionError(f"{key} parsed")
    try:
        format_key(t, "pub", "update", None, "ru")
    except InvalidKey:
        return
    raise AssertionError("formatted")
