"""The key layout: lenient reading, strict writing, numeric time order."""

import pytest

from dmsupdate.state.keys import (
    EffectiveTime,
    InvalidKey,
    check_label,
    escape_arg,
    format_key,
    parse_key,
    window_start_key,
)

REAL_KEYS = [
    "updates/2016-01-15/04-00-01-262711077/cleanup_drop_http:%2F%2Fenvironment%2Edata%2Egov%2Euk"
    "%2Fflood-monitoring%2Fgraph%2Freadings-2015-11-20",
    "updates/2016-01-15/02-03-07-185994019/readings_update.ru.gz",
    "updates/2016-01-15/03-18-10-364044013/3df_replace_http:%2F%2Fenvironment%2Edata%2Egov%2Euk"
    "%2Fflood-monitoring%2Fgraph%2F3df.ttl",
]


def test_real_production_keys_parse():
    drop, update, replace = (parse_key(k) for k in REAL_KEYS)
    assert drop.op == "drop" and drop.format is None
    assert drop.graph == "http://environment.data.gov.uk/flood-monitoring/graph/readings-2015-11-20"
    assert update.op == "update" and update.format == "ru.gz" and update.gzipped
    assert replace.graph == "http://environment.data.gov.uk/flood-monitoring/graph/3df"
    assert replace.rdf_format == "ttl"
    assert update.effective < replace.effective < drop.effective


def test_fraction_digits_compare_numerically():
    half = parse_key("updates/2020-01-01/00-00-00-5/a_update.ru").effective
    forty = parse_key("updates/2020-01-01/00-00-00-40/a_update.ru").effective
    assert forty < half
    assert half.time == "00-00-00-500000000"


def test_both_image_forms_are_read():
    nested = parse_key("images/2020-03-04/05-06-07-123456789/base_image.tgz")
    flat = parse_key("images/2020-03-04-05-06-07-123456789_base_dump.nq.gz")
    assert nested.kind == flat.kind == "image"
    assert nested.effective == flat.effective
    assert flat.op == "dump" and flat.format == "nq.gz"


def test_extras_are_recognised():
    assert parse_key("images/config.ttl").kind == "extra"
    assert parse_key("images/text-index.opt").kind == "extra"


@pytest.mark.parametrize(
    "key",
    [
        "updates/2020-01-01/00-00-00-1/a_frobnicate.ttl",
        "updates/2020-01-01/00-00-00-1/a_add.ttl",  # no graph
        "updates/2020-01-01/00-00-00-1/a_update_x.ru",  # update takes no arg
        "updates/2020-13-01/00-00-00-1/a_update.ru",
        "updates/2020-01-01/25-00-00-1/a_update.ru",
        "updates/2020-01-01/00-00-00-1234567890/a_update.ru",
        "updates/2020-01-01/00-00-00-1/a_add_g.exe",
        "images/2020-01-01/00-00-00-1/a_image.nq.gz",
        "random/file.txt",
        "",
    ],
)
def test_off_layout_keys_are_invalid(key):
    with pytest.raises(InvalidKey):
        parse_key(key)


def test_format_round_trips_with_escaping():
    t = EffectiveTime.parse("2021-06-01", "12-00-00-000000001")
    graph = "http://example.org/graph/v1.2/50%"
    key = format_key(t, "pub-1", "replace", graph, "ttl.gz")
    assert (
        key
        == "updates/2021-06-01/12-00-00-000000001/pub-1_replace_http:%2F%2Fexample%2Eorg%2Fgraph%2Fv1%2E2%2F50%25.ttl.gz"
    )
    parsed = parse_key(key)
    assert parsed.graph == graph and parsed.effective == t and parsed.format == "ttl.gz"


def test_writing_is_strict():
    t = EffectiveTime.now()
    for label in ("a_b", "a/b", "", "-x", "x" * 65):
        with pytest.raises(InvalidKey):
            check_label(label)
    with pytest.raises(InvalidKey):
        format_key(t, "ok", "drop")
    with pytest.raises(InvalidKey):
        format_key(t, "ok", "update", "g", "ru")
    with pytest.raises(InvalidKey):
        format_key(t, "ok", "explode", None, "ru")
    assert format_key(t, "ok", "dump").endswith("ok_dump.nq.gz")


def test_escape_only_touches_reserved_characters():
    assert escape_arg("a%b/c.d") == "a%25b%2Fc%2Ed"


def test_effective_time_text_forms():
    t = EffectiveTime.parse("2016-01-15", "04-00-01-262711077")
    assert EffectiveTime.parse_text(t.path) == t
    assert EffectiveTime.parse_text(t.isoformat()) == t
    assert t.isoformat() == "2016-01-15T04:00:01.262711077Z"


def test_window_start_sorts_before_every_key_of_that_second():
    t = EffectiveTime.parse("2016-01-15", "04-00-01-262711077")
    start = window_start_key("updates", t)
    earlier_in_second = "updates/2016-01-15/04-00-01-1/a_update.ru"
    previous_second = "updates/2016-01-15/04-00-00-9/a_update.ru"
    assert previous_second < start < earlier_in_second
