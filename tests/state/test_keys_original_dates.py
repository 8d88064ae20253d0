"""Effective dates as the original tool wrote them in status.json (`{date}-{time}`)."""

from dmsupdate.state.keys import EffectiveTime


def test_original_status_dates_with_a_dash_separator_parse():
    t = EffectiveTime.parse_text("2016-01-15-04-00-01-262711077")
    assert t.path == "2016-01-15/04-00-01-262711077"


def test_the_original_default_date_parses_as_the_epoch():
    assert EffectiveTime.parse_text("1970-01-01-00-00-00-0000").nanos == 0
