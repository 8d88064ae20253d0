"""PostgreSQL connections: timestamps read at the speed of datetime.fromisoformat, and
prepared statements planned for their parameters.

Django's psycopg loader for `timestamptz` parses each value in Python (about 3 µs
each): the fleet page's ten thousand last report times cost ~30 ms of its budget.
This loader returns the same values (aware, in the connection's time zone, which is
also the session's) by way of `datetime.fromisoformat`, and leaves whatever that does
not read (BC dates, infinity, another DateStyle) to Django's own loader.

Statements are prepared after a few uses (settings: `prepare_threshold`), which saves
parsing them. PostgreSQL would also, after five executions of one, switch to a generic
plan made without the parameters' values when its estimate looks no worse; for a range
on a skewed column that plan can be ruinous: the objects list with `since=` an hour ago
on a dataset of a million objects went from 30 ms to 1.7-4 s from its eleventh request
on a connection (bench_fleet_scale). Connections that prepare statements therefore plan
each execution for its values (`plan_cache_mode = force_custom_plan`, one SET per new
connection); parsing is still saved.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

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


def _plan_for_parameters(sender: Any, connection: Any, **kwargs: Any) -> None:
    if (
        connection.vendor != "postgresql"
        or connection.settings_dict["OPTIONS"].get("prepare_threshold") is None
    ):
        return  # statements never prepared are always planned for their values
    with connection.connection.cursor() as cursor:
        cursor.execute("SET plan_cache_mode = force_custom_plan")


def configure_connections() -> None:
    """Set up every PostgreSQL connection opened from now on (called once at start-up)."""
    connection_created.connect(_use_iso_tz_loader, dispatch_uid="dmsupdate.postgres.iso_tz_loader")
    connection_created.connect(_plan_for_parameters, dispatch_uid="dmsupdate.postgres.plan_for_parameters")
