"""Fleet page and server list at 1,000 servers and 1,000,000 registry objects (or 10x) on PostgreSQL: time, queries.

The data set (bench/fleet_data.py, the 1x set) is generated in SQL once into its
own database (`<DATABASE_URL name>_bench_fleet`) and kept; `BENCH_FLEET_SCALE=10` uses
the 10x set (10,000 servers, 10,000,000 objects, `<name>_scale`) and
`BENCH_FLEET_SERVERS=N` sets the number of servers alone. The fleet page (`/`), the
fragment it polls (`/fleet/rows`), the page with a cold cache, sorted, searched and
paged, and the REST server list (a page of 100, and all) are requested in-process through Django's
test client (all of the server's work: middleware, session or token, role,
queries, HTML or JSON; no network): 2 warm-up requests, then 15 timed ones, each a
run. The raw side is the same reads as bare SQL through a cursor (no ORM objects,
no HTML); the ratio to it is shown, the goal is the time itself.

    python -m bench.bench_fleet_page                    # 1x
    BENCH_FLEET_SCALE=10 python -m bench.bench_fleet_page
"""

from __future__ import annotations

import os
import statistics
import sys
import time

from bench.fleet_data import ONE_X, TEN_X, ensure_fleet, fleet_database
from bench.report import Outcome, judged, run_standalone

RUNS = 15
TARGET_MS = 150.0


def measure(client, url: str, cold: bool = False) -> tuple[list[float], list[float], int]:
    """Wall and CPU times (ms) of RUNS requests, and the query count of one.

    `cold` empties the cache before each request (the page keeps none of its own: the
    figure shows it). CPU time is this process's (Python and Django, not PostgreSQL):
    it moves less than wall time on a busy machine.
    """
    from django.core.cache import cache
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(2):  # warm templates and PostgreSQL buffers
        assert client.get(url).status_code == 200
    times, cpu = [], []
    for _ in range(RUNS):
        if cold:
            cache.clear()
        started, started_cpu = time.perf_counter(), time.process_time()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
        assert response.status_code == 200
    if cold:
        cache.clear()
    with CaptureQueriesContext(connection) as ctx:
        client.get(url)
    return times, cpu, len(ctx.captured_queries)


def raw_sql_ms() -> tuple[float, float]:
    """The page's reads as bare SQL through a cursor (no ORM objects, no HTML): (without, with) the sparklines' read."""
    from django.db import connection
    from django.utils import timezone

    from servers.dashboard import (
        FLEET_FIELDS,
        PENDING_CAP,
        datasets_with_heads,
        newest_update_times,
        section_rows,
    )
    from servers.models import Server
    from servers.sparklines import lag_history

    heads_sql = datasets_with_heads().values_list("pk", "head_key", "head_ns").query.sql_with_params()
    servers_sql = (
        Server.objects.order_by("name").values_list("pk", "dataset_id", *FLEET_FIELDS).query.sql_with_params()
    )
    warm, cold = [], []
    for _ in range(RUNS):
        started = time.perf_counter()
        with connection.cursor() as cur:
            cur.execute(*heads_sql)
            dataset_ids = [row[0] for row in cur.fetchall()]
            cur.execute(*servers_sql)
            rows = cur.fetchall()
        newest_update_times(dataset_ids, PENDING_CAP + 1)
        middle = time.perf_counter()
        shown: dict[int, list[int]] = {}
        per_section = section_rows(len(dataset_ids), one_dataset=False)  # the rows the overview shows
        for row in rows:
            shown.setdefault(row[1], [])
            if len(shown[row[1]]) < per_section:
                shown[row[1]].append(row[0])
        lag_history([pk for ids in shown.values() for pk in ids], timezone.now())
        warm.append((middle - started) * 1000)
        cold.append((time.perf_counter() - started) * 1000)
    return statistics.median(warm), statistics.median(cold)


def sizes() -> tuple[str, dict]:
    """The data set: 1x, or 10x with BENCH_FLEET_SCALE=10; BENCH_FLEET_SERVERS sets the servers alone."""
    scale = int(os.environ.get("BENCH_FLEET_SCALE") or 1)
    suffix, size = ("scale", dict(TEN_X)) if scale == 10 else ("bench_fleet", dict(ONE_X))
    if os.environ.get("BENCH_FLEET_SERVERS"):
        size["servers"] = int(os.environ["BENCH_FLEET_SERVERS"])
        suffix += f"_{size['servers']}"
    return suffix, size


def page_requests(client, servers: int) -> list[tuple[str, object, str, bool]]:
    """The fleet page's requests (name, client, URL, cold cache): plain, polled, cold, sorted, searched, paged."""
    from servers.models import Server

    fleet = f"{servers:,} servers"
    probe = Server.objects.order_by("name").values_list("name", flat=True)[servers // 2]
    return [
        (f"fleet page, {fleet}", client, "/", False),
        (f"fleet fragment (polled), {fleet}", client, "/fleet/rows", False),
        (f"fleet page, cold cache, {fleet}", client, "/", True),
        (f"fleet page sorted by lag, {fleet}", client, "/?sort=lag", True),
        (f"fleet fragment sorted by state, {fleet}", client, "/fleet/rows?sort=state", True),
        (f"fleet search, {fleet}", client, f"/fleet/rows?q={probe[:-1]}", True),
        (
            f"fleet page, one dataset, page 2 by lag, {fleet}",
            client,
            "/?dataset=dataset-2&page=2&sort=lag",
            True,
        ),
    ]


def main(argv: list[str] | None = None) -> Outcome:
    suffix, size = sizes()
    connection = fleet_database(suffix)
    loaded = ensure_fleet(connection, **size)
    from django.contrib.auth.models import Group, User
    from django.test import Client

    from accounts.models import ApiToken

    viewer, _ = User.objects.get_or_create(username="bench-viewer")
    viewer.groups.add(Group.objects.get_or_create(name="viewer")[0])
    client = Client()
    client.force_login(viewer)
    raw_warm, raw_cold = raw_sql_ms()
    ApiToken.objects.filter(user=viewer, name="bench").delete()
    _, key = ApiToken.issue(viewer, "viewer", name="bench")
    api = Client(headers={"Authorization": f"Token {key}"})
    targets, details = (
        [],
        [
            f"Data set {'built in ' + format(loaded, '.0f') + ' s' if loaded else 'kept from an earlier run'}; "
            f"raw SQL {raw_warm:.1f} ms (page reads), {raw_cold:.1f} ms with the 24 h chart query.",
            "",
            "| request | median | CPU (this process) | queries | / raw SQL |",
            "|---|---|---|---|---|",
        ],
    )

    fleet = f"{size['servers']:,} servers"
    for name, http, url, cold in [
        *page_requests(client, size["servers"]),
        (f"GET /api/v1/servers/ (page of 100), {fleet}", api, "/api/v1/servers/", False),
        (
            f"GET /api/v1/servers/?limit={size['servers']} (all)",
            api,
            f"/api/v1/servers/?limit={size['servers']}",
            False,
        ),
    ]:
        times, cpu, queries = measure(http, url, cold)
        median = statistics.median(times)
        raw = raw_cold
        targets.append(
            judged(name, "ms", times, f"< {TARGET_MS:.0f} ms", at_most=TARGET_MS, note=f"{queries} queries")
        )
        details.append(
            f"| {name} | {median:.1f} ms | {statistics.median(cpu):.1f} ms | {queries} | {median / raw:.1f}x |"
        )
    for line in details:
        print(line)
    return Outcome(targets, details, RUNS)


if __name__ == "__main__":
    raise SystemExit(run_standalone("bench_fleet_page", main, sys.argv[1:]))
