"""The fleet page's sparklines: each shown server's lag over the last day, read from the hourly roll-up."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from django.db import connection

from servers.models import LagHour

# Sparkline resolution: one point per hour over the last day, so a server costs at
# most this many rows in the sparkline query however often it reports.
SPARK_HOURS = 24


def lag_history(server_ids: Iterable[int], now: datetime, hours: int = SPARK_HOURS) -> dict[int, list]:
    """Each server's reported hours among the last `hours`, oldest first, in one query: (offset, worst, last).

    `offset` counts hours from the first of them (0 to hours - 1); `worst` is the hour's
    highest lag, `last` its lag at the hour's last report. Read from the hourly roll-up
    (servers.models.LagHour), so a server costs at most `hours` rows however often it
    reports. An hour without a report holds the previous hour's last value: the
    sparkline draws steps, so those hours need no entry (and no work) of their own.
    """
    ids = list(server_ids)
    if not ids:
        return {}
    last_hour = int(now.timestamp()) // 3600
    first = last_hour - hours + 1
    return {
        server_id: list(zip(offsets, worst, last, strict=True))
        for server_id, offsets, worst, last in _lag_hours(ids, first, last_hour)
    }


def _lag_hours(
    ids: list[int], first: int, last: int
) -> list[tuple[int, list[int], list[float], list[float]]]:
    """Per server: the offsets from `first` of its hours in [first, last], each hour's worst and last lag, by hour.

    On PostgreSQL one row per server with three arrays (the driver decodes arrays far
    faster than thousands of rows); elsewhere rows folded here.
    """
    table = LagHour._meta.db_table
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute(
                f"""SELECT server_id, array_agg(hour - %s ORDER BY hour), array_agg(max_lag_seconds ORDER BY hour),
                        array_agg(lag_seconds ORDER BY hour)
                    FROM {table} WHERE hour BETWEEN %s AND %s AND server_id = ANY(%s) GROUP BY server_id""",
                [first, first, last, ids],
            )
            return cur.fetchall()
    folded: dict[int, tuple[list[int], list[float], list[float]]] = defaultdict(lambda: ([], [], []))
    rows = LagHour.objects.filter(hour__gte=first, hour__lte=last, server_id__in=ids).order_by("hour")
    for server_id, hour, worst, lag in rows.values_list(
        "server_id", "hour", "max_lag_seconds", "lag_seconds"
    ):
        offsets, worsts, lags = folded[server_id]
        offsets.append(hour - first)
        worsts.append(worst)
        lags.append(lag)
    return [(server_id, *values) for server_id, values in folded.items()]
