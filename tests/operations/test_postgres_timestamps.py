"""Timestamps read from PostgreSQL through dmsupdate.postgres's loader equal Django's own reading of them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.db import DataError, connection
from django.db.backends.postgresql.psycopg_any import register_tzloader

from dmsupdate.postgres import iso_tz_loader

TIMES = [
    "2026-12-07 23:04:40.675161+00",
    "2026-12-07 23:04:40+00",
    "2026-12-07 23:04:40.5+05:30",
    "1883-11-18 12:00:00+00:01:15",
    "0999-01-01 00:00:00+00",
]


def read(texts: list[str]) -> list[datetime]:
    with connection.cursor() as cur:
        cur.execute("SELECT unnest(%s::timestamptz[])", [texts])
        return [row[0] for row in cur.fetchall()]


@pytest.mark.django_db
def test_timestamps_are_read_by_the_iso_loader_and_equal_djangos_reading():
    connection.ensure_connection()
    loader = connection.connection.adapters.get_loader(1184, 0)
    assert loader is iso_tz_loader(connection.timezone)
    ours = read(TIMES)
    register_tzloader(connection.timezone, connection.connection)
    try:
        theirs = read(TIMES)
    finally:
        connection.connection.adapters.register_loader("timestamptz", loader)
    assert ours == theirs
    assert [t.tzinfo for t in ours] == [t.tzinfo for t in theirs] == [connection.timezone] * len(TIMES)
    assert ours[0] == datetime(2026, 12, 7, 23, 4, 40, 675161, tzinfo=UTC)
    assert ours[2] == datetime(
        2026, 12, 7, 23, 4, 40, 500000, tzinfo=timezone(timedelta(hours=5, minutes=30))
    )


@pytest.mark.django_db
@pytest.mark.parametrize("text", ["infinity", "0044-03-15 12:00:00+00 BC"])
def test_what_python_cannot_hold_fails_as_with_djangos_loader(text):
    with pytest.raises(DataError):
        read([text])
