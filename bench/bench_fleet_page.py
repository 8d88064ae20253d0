"""Fleet page with 1,000 servers and 1,000,000 registry objects on PostgreSQL: server time and query count.

Loads the data once into its own database (`<DATABASE_URL name>_bench_fleet`, kept between
runs), then renders the fleet page and its polled partial in-process (Django's test client:
all of the server's work, no network) and compares with the raw SQL the page needs.

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
SERVERS = 1_000
OBJECTS = 1_000_000
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
    connection.settings_dict["TEST"]["NAME"] = f"{connection.settings_dict['NAME']}_bench_fleet"
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
    # with expired, deleted, invalid and missing ones and an image every 10,000.
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
        CASE WHEN i %% 200 < 6 THEN 'expired' WHEN i %% 200 = 7 THEN 'deleted'
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
    # As autovacuum leaves a settled table: statistics and the visibility map (index-only scans).
    "VACUUM ANALYZE",
]


def load(connection) -> None:
    """Create the data set unless the kept database already has it."""
    from publications.models import StateObject
    from servers.models import Server

    if Server.objects.count() == SERVERS and StateObject.objects.count() == OBJECTS:
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


def measure(client, url: str) -> tuple[list[float], int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(2):  # warm caches (templates, PostgreSQL buffers)
        assert client.get(url).status_code == 200
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    with CaptureQueriesContext(connection) as ctx:
        client.get(url)
    return times, len(ctx.captured_queries)


def raw_sql_ms() -> float:
    """The same three reads done bare (no ORM objects, no template): what the page cannot go below."""
    from django.utils import timezone

    from servers.dashboard import datasets_with_heads, lag_history, with_capped_pending
    from servers.models import Server

    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        list(datasets_with_heads().values_list("pk", "head_key", "head_ns"))
        ids = [row[0] for row in with_capped_pending(Server.objects.all()).values_list("pk", "pending_updates")]
        lag_history(ids, timezone.now())
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


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
    raw = raw_sql_ms()
    for name, url in [("full page", "/"), ("partial (polled)", "/fleet/rows")]:
        times, queries = measure(client, url)
        median = statistics.median(times)
        verdict = "ok" if median < TARGET_MS else f"over the {TARGET_MS:.0f} ms target"
        print(
            f"{name:17} median {median:6.1f} ms  (min {min(times):.1f}, max {max(times):.1f}, {RUNS} runs)  "
            f"{queries} SQL queries  {median / raw:.1f}x the raw SQL ({raw:.1f} ms)  [{verdict}]"
        )


if __name__ == "__main__":
    main()
