"""PostgreSQL connections: timestamps read at the speed of datetime.fromisoformat.

Django's psycopg loader for `timestamptz` parses each value in Python (about 3 µs
each): the fleet page's ten thousand last report times cost ~30 ms of its budget.
This loader returns the same values (aware, in the connection's time zone, which is
also the session's) by way of `datetime.fromisoformat`, and leaves whatever that does
not read (BC dates, infinity, another DateStyle) to Django's own loader.
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


def read_timestamps_fast() -> None:
    """Install the loader on every PostgreSQL connection opened from now on (called once at start-up)."""
    connection_created.connect(_use_iso_tz_loader, dispatch_uid="dmsupdate.postgres.iso_tz_loader")
