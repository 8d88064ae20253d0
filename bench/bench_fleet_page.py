"""Fleet page with 1,000 servers and 1,000,000 registry objects on PostgreSQL: server time and query count.

Loads the data once into its own database (`<DATABASE_URL name>_bench_fleet`, kept between
runs), then renders the fleet page and its polled partial in-process (Django's test client:
all of the server's work, no network), sorted and searched too, and compares with the raw
SQL the page needs. `BENCH_FLEET_SCALE=10` runs it at 10,000 servers and 10,000,000 objects
(in `<name>_bench_fleet_x10`); `BENCH_FLEET_SERVERS=10000` sets the number of servers alone.

    DATABASE_URL=postgres://... python -m bench            # every benchmark
    DATABASE_URL=postgres://... python bench/bench_fleet_page.py
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCALE = int(os.environ.get("BENCH_FLEET_SCALE") or 1)
# BENCH_FLEET_SERVERS sets the fleet alone (e.g. 10,000 servers over 1,000,000 objects).
SERVERS = int(os.environ.get("BENCH_FLEET_SERVERS") or 1_000 * SCALE)
OBJECTS = 1_000_000 * SCALE
DATASETS = 4
REPORTS_PER_SERVER = 48  # one every 30 min over the sparkline's 24 h
RUNS = 15
TARGET_MS = 150.0


def setup_django():
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dmsupdate.settings")
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        raise SystemExit("bench_fleet_page needs PostgreSQL: set DATABASE_URL=postgres://...")
    import django

    django.setup()
    from django.conf import settings

    # Production-like: no query log, cached templates.
    settings.DEBUG = False
    from django.db import connection

    connection.settings_dict.setdefault("TEST", {})
    suffix = (f"_x{SCALE}" if SCALE != 1 else "") + (f"_{SERVERS}" if SERVERS != 1_000 * SCALE else "")
    connection.settings_dict["TEST"]["NAME"] = f"{connection.settings_dict['NAME']}_bench_fleet{suffix}"
    connection.creation.create_test_db(verbosity=0, keepdb=True, serialize=False)
    return connection


LOAD_SQL = [
    # Datasets.
    """
    INSERT INTO publications_dataset (name, s3root, s3endpoint, description, gc_keep_images, gc_min_age_hours,
        gc_grace_hours, sync_cursor, last_effective_ns, created_at, last_sync_error)
    SELECT 'dataset-' || d, 'file:///srv/state/dataset-' || d, '', '', 2, 168, 48, '', 0, now(), ''
    FROM generate_series(1, %(datasets)s) AS d
    """,
    # Objects: one every 10 s per dataset, ending a minute ago; mostly published updates,
    # with expired, deleted, invalid and missing ones and a (published) image every 10,000.
    """
    WITH params AS (
        SELECT (extract(epoch FROM now()) * 1e9)::bigint - 60 * 1000000000::bigint
               - (%(per_dataset)s::bigint * 10 * 1000000000::bigint) AS base
    ), rows AS (
        SELECT d.id AS dataset_id, i, params.base + i::bigint * 10 * 1000000000::bigint AS eff
        FROM publications_dataset d, params, generate_series(1, %(per_dataset)s) AS i
    )
    INSERT INTO publications_stateobject (dataset_id, key, kind, op, label, effective_ns, effective_at, arg,
        format, size, etag, sha256, state, error, first_seen, last_seen, state_changed_at)
    SELECT dataset_id,
        CASE WHEN i %% 10000 = 0
            THEN 'images/' || to_char(to_timestamp(eff / 1e9) AT TIME ZONE 'UTC', 'YYYY-MM-DD/HH24-MI-SS')
                 || '-000000000/full_image.tgz'
            ELSE 'updates/' || to_char(to_timestamp(eff / 1e9) AT TIME ZONE 'UTC', 'YYYY-MM-DD/HH24-MI-SS')
                 || '-000000000/readings_add_http:%%2F%%2Fexample%%2Eorg%%2Fgraph%%2F' || i || '.ttl' END,
        CASE WHEN i %% 10000 = 0 THEN 'image' ELSE 'update' END,
        CASE WHEN i %% 10000 = 0 THEN 'image' ELSE 'add' END,
        'readings', eff, to_timestamp(eff / 1e9), '', 'ttl', 1000 + i %% 5000, '', '',
        CASE WHEN i %% 10000 = 0 THEN 'published'
             WHEN i %% 200 < 6 THEN 'expired' WHEN i %% 200 = 7 THEN 'deleted'
             WHEN i %% 400 = 9 THEN 'invalid' WHEN i %% 400 = 10 THEN 'missing' ELSE 'published' END,
        '', now(), now(), now()
    FROM rows
    """,
    # Servers: a quarter of the fleet per dataset, 0 to 40 updates behind the head, a few
    # never reported, failing, unreachable, rebuilding or disabled.
    """
    WITH heads AS (
        SELECT dataset_id, max(effective_ns) AS head FROM publications_stateobject
        WHERE kind = 'update' AND state = 'published' GROUP BY dataset_id
    ), numbered AS (
        SELECT s, d.id AS dataset_id
        FROM publications_dataset d, generate_series(1, %(per_dataset_servers)s) AS s
    )
    INSERT INTO servers_server (name, dataset_id, agent_url, agent_token, enabled, effective_ns, last_report_at,
        last_succeeded, failed_key, last_error, late_keys, invalid_keys, unreachable_since, unreachable_error,
        rebuild_requested_at, created_at, last_update_at)
    SELECT 'fuseki-' || n.dataset_id || '-' || n.s, n.dataset_id, 'http://10.0.' || n.dataset_id || '.' || n.s || ':8765',
        '', n.s %% 97 <> 5,
        CASE WHEN n.s %% 50 = 3 THEN NULL ELSE h.head - ((n.s * 7) %% 41)::bigint * 10 * 1000000000::bigint END,
        CASE WHEN n.s %% 50 = 3 THEN NULL ELSE now() - ((n.s %% 9) || ' minutes')::interval END,
        CASE WHEN n.s %% 31 = 4 THEN false ELSE true END,
        CASE WHEN n.s %% 31 = 4 THEN 'updates/2026-01-01/00-00-00-000000000/readings_update.ru' ELSE '' END,
        CASE WHEN n.s %% 31 = 4 THEN 'HTTP 400 from the store: syntax error at line 3' ELSE '' END,
        '[]'::jsonb, '[]'::jsonb,
        CASE WHEN n.s %% 43 = 6 THEN now() - interval '20 minutes' ELSE NULL END,
        CASE WHEN n.s %% 43 = 6 THEN 'connection refused' ELSE '' END,
        NULL, now(), NULL
    FROM numbered n JOIN heads h ON h.dataset_id = n.dataset_id
    """,
    # Status reports: every 30 min over the last day, lag varying.
    """
    INSERT INTO servers_statusreport (server_id, received_at, effective_ns, succeeded, reachable, applied,
        failed_key, error, pending_updates, lag_seconds, body)
    SELECT s.id, now() - (r * interval '30 minutes'), s.effective_ns, true, true, r %% 4, '', '',
        (s.id * r) %% 40, ((s.id * r) %% 40) * 10.0, '{}'::jsonb
    FROM servers_server s, generate_series(0, %(reports)s - 1) AS r
    """,
    # Their hourly roll-up, as record_report keeps it (the sparklines and the 7-day chart read it).
    """
    INSERT INTO servers_laghour (server_id, hour, pending_updates, lag_seconds, max_pending, max_lag_seconds)
    SELECT server_id, floor(extract(epoch FROM received_at) / 3600)::int AS hour,
        (array_agg(pending_updates ORDER BY received_at DESC))[1], (array_agg(lag_seconds ORDER BY received_at DESC))[1],
        max(pending_updates), max(lag_seconds)
    FROM servers_statusreport GROUP BY 1, 2
    """,
    # As autovacuum leaves a settled table: statistics and the visibility map (index-only scans).
    "VACUUM ANALYZE",
]


def load(connection) -> None:
    """Create the data set unless the kept database already has it."""
    from publications.models import StateObject
    from servers.models import LagHour, Server

    if (
        Server.objects.count() == SERVERS
        and StateObject.objects.count() == OBJECTS
        and LagHour.objects.exists()
    ):
        print("data: kept from a previous run")
        return
    from django.core.management import call_command

    call_command("flush", interactive=False, verbosity=0)
    params = {
        "datasets": DATASETS,
        "per_dataset": OBJECTS // DATASETS,
        "per_dataset_servers": SERVERS // DATASETS,
        "reports": REPORTS_PER_SERVER,
    }
    started = time.perf_counter()
    with connection.cursor() as cur:
        for sql in LOAD_SQL:
            cur.execute(sql, params if "%(" in sql else None)
    print(f"data: loaded in {time.perf_counter() - started:.0f} s")


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
        SECTION_ROWS,
        datasets_with_heads,
        lag_history,
        newest_update_times,
    )
    from servers.models import Server

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
        for row in rows:
            shown.setdefault(row[1], [])
            if len(shown[row[1]]) < SECTION_ROWS:
                shown[row[1]].append(row[0])
        lag_history([pk for ids in shown.values() for pk in ids], timezone.now())
        warm.append((middle - started) * 1000)
        cold.append((time.perf_counter() - started) * 1000)
    return statistics.median(warm), statistics.median(cold)


def main() -> None:
    connection = setup_django()
    load(connection)
    from django.contrib.auth.models import Group, User
    from django.test import Client

    from publications.models import StateObject
    from servers.models import Server

    viewer, _ = User.objects.get_or_create(username="bench-viewer")
    viewer.groups.add(Group.objects.get_or_create(name="viewer")[0])
    client = Client()
    client.force_login(viewer)
    print(f"fleet page: {Server.objects.count()} servers, {StateObject.objects.count()} registry objects")
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    raw_warm, raw_cold = raw_sql_ms()
    print(f"raw SQL: {raw_warm:.1f} ms (page reads), {raw_cold:.1f} ms (with the shown rows' sparklines)")
    # The REST API beside the page: a viewer token, the default page (100) and the whole fleet.
    from accounts.models import ApiToken

    ApiToken.objects.filter(user=viewer, name="bench").delete()
    _, key = ApiToken.issue(viewer, "viewer", name="bench")
    api = Client(headers={"Authorization": f"Token {key}"})
    probe = Server.objects.order_by("name").values_list("name", flat=True)[SERVERS // 2]
    for name, http, url, cold in [
        ("full page", client, "/", False),
        ("partial (polled)", client, "/fleet/rows", False),
        ("full page, cold", client, "/", True),
        ("sorted by lag", client, "/?sort=lag", True),
        ("sorted by state", client, "/fleet/rows?sort=state", True),
        ("search", client, f"/fleet/rows?q={probe[:-1]}", True),
        ("one dataset, p2", client, "/?dataset=dataset-2&page=2&sort=lag", True),
        ("API servers, 100", api, "/api/v1/servers/", False),
        ("API servers, 1000", api, "/api/v1/servers/?limit=1000", False),
    ]:
        times, cpu, queries = measure(http, url, cold)
        median = statistics.median(times)
        raw = raw_cold
        verdict = "ok" if median < TARGET_MS else f"over the {TARGET_MS:.0f} ms target"
        print(
            f"{name:17} median {median:6.1f} ms  (min {min(times):.1f}, max {max(times):.1f}, {RUNS} runs; "
            f"CPU {statistics.median(cpu):.1f} ms)  {queries} SQL queries  {median / raw:.1f}x the raw SQL  "
            f"[{verdict}]"
        )


if __name__ == "__main__":
    main()
