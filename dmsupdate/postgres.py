"""PostgreSQL connections: timestamps read at the speed of datetime.fromisoformat, and
range reads planned for their parameters.

Django's psycopg loader for `timestamptz` parses each value in Python (about 3 µs
each): the fleet page's ten thousand last report times cost ~30 ms of its budget.
This loader returns the same values (aware, in the connection's time zone, which is
also the session's) by way of `datetime.fromisoformat`, and leaves whatever that does
not read (BC dates, infinity, another DateStyle) to Django's own loader.

Statements are prepared after a few uses (settings: `prepare_threshold`), which saves
parsing and, for the hot lookups (a token, a dataset's head), planning them. PostgreSQL
switches a prepared statement to a generic plan, made without its parameters' values,
after five executions when that plan's estimate looks no worse; for a range on a skewed
column the generic plan can be ruinous: the objects list with `since=` an hour ago on a
dataset of a million objects went from 30 ms to 1.7-4 s from its eleventh request on a
connection (bench_fleet_scale). Such reads run inside `planned_for_values()`, which has
PostgreSQL plan each of their statements for its values (`SET LOCAL plan_cache_mode`,
for one transaction); everything else keeps its cached plans (forcing custom plans
everywhere cost the head/ poll 60 % more CPU).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.backends.signals import connection_created


@lru_cache
def iso_tz_loader(timezone: Any) -> type:
    """A timestamptz loader for connections in `timezone` (None: naive datetimes, as Django reads them)."""
    from django.db.backends.postgresql.psycopg_any import BaseTzLoader

    class IsoTzLoader(BaseTzLoader):
        def load(self, data: Any) -> datetime:
            try:
                value = datetime.fromisoformat(bytes(data).decode())
            except ValueError:
                return super().load(data)
            return value.replace(tzinfo=self.timezone)

    # Django's create_cursor compares this attribute with the connection's time zone.
    IsoTzLoader.timezone = timezone
    return IsoTzLoader


def _use_iso_tz_loader(sender: Any, connection: Any, **kwargs: Any) -> None:
    if connection.vendor != "postgresql" or not hasattr(connection.connection, "adapters"):
        return  # psycopg 2 has no loaders to replace
    connection.connection.adapters.register_loader("timestamptz", iso_tz_loader(connection.timezone))


@contextmanager
def planned_for_values(using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """Run the block in a transaction whose statements PostgreSQL plans for their values (no generic plan)."""
    connection = connections[using]
    if (
        connection.vendor != "postgresql"
        or connection.settings_dict["OPTIONS"].get("prepare_threshold") is None
    ):
        yield  # statements never prepared are always planned for their values
        return
    with transaction.atomic(using=using):
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        yield


def configure_connections() -> None:
    """Set up every PostgreSQL connection opened from now on (called once at start-up)."""
    connection_created.connect(_use_iso_tz_loader, dispatch_uid="dmsupdate.postgres.iso_tz_loader")
