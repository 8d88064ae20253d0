"""The fleet data sets the fleet benchmarks share: generated in SQL into their own database, kept between runs.

`fleet_database(suffix)` sets Django up on `<DATABASE_URL name>_<suffix>` (created
once, kept), and `ensure_fleet(...)` fills it with `servers` servers over `datasets`
datasets and `objects` registry objects, unless it already holds exactly that:
- objects: one every 10 s per dataset, ending a minute ago, each first seen (and
  in its state since) its effective time; mostly published updates, with expired,
  deleted, invalid and missing ones and a published image every 10,000;
- servers: spread evenly over the datasets, 0 to 40 updates behind the head, 2 %
  never reported, some failing, unreachable or disabled;
- 48 status reports per server over the last 24 h, and their hourly roll-up (the
  lag charts' data).

The 1x set (1,000 servers, 1,000,000 objects, database `_bench_fleet`) is what
bench_fleet_page measures; the 10x set (10,000 servers, 10,000,000 objects,
database `_scale`) is bench_fleet_scale's, and any benchmark of the fleet pages can
call `fleet_database("scale")` and `ensure_fleet(**TEN_X)` to use it
(`BENCH_FLEET_SCALE=10 python -m bench fleet_page` does).
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ONE_X = {"servers": 1_000, "objects": 1_000_000, "datasets": 4}
TEN_X = {"servers": 10_000, "objects": 10_000_000, "datasets": 10}
REPORTS_PER_SERVER = 48  # one every 30 min over the lag chart's 24 h


def fleet_database(suffix: str):
    """Django set up (production-like: DEBUG off) on the kept database `<name>_<suffix>`; its connection."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dmsupdate.settings")
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        raise SystemExit("the fleet benchmarks need PostgreSQL: set DATABASE_URL=postgres://...")
    import django

    django.setup()
    from django.conf import settings

    settings.DEBUG = False  # no query log, cached templates
    from django.db import connection

    connection.settings_dict.setdefault("TEST", {})
    connection.settings_dict["TEST"]["NAME"] = f"{connection.settings_dict['NAME']}_{suffix}"
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
        '', to_timestamp(eff / 1e9), to_timestamp(eff / 1e9), to_timestamp(eff / 1e9)
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


def ensure_fleet(connection, servers: int, objects: int, datasets: int) -> float:
    """Create the data set unless the kept database already holds it; seconds spent loading (0 when kept)."""
    from publications.models import StateObject
    from servers.models import LagHour, Server

    if Server.objects.count() == servers and StateObject.objects.count() == objects:
        if not LagHour.objects.exists():  # a set kept from before the roll-up existed: add it alone
            with connection.cursor() as cur:
                cur.execute(next(sql for sql in LOAD_SQL if "servers_laghour" in sql))
                cur.execute("ANALYZE servers_laghour")
        return 0.0
    # The bench's own database, made again from scratch: a flush would TRUNCATE the audit
    # log, which the database refuses (audit/migrations/0003_refuse_truncate.py).
    connection.close()
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False, serialize=False)
    params = {
        "datasets": datasets,
        "per_dataset": objects // datasets,
        "per_dataset_servers": servers // datasets,
        "reports": REPORTS_PER_SERVER,
    }
    print(
        f"  building the data set: {servers:,} servers, {objects:,} objects (kept for later runs)", flush=True
    )
    started = time.perf_counter()
    with model_defaults(connection):
        with connection.cursor() as cur:
            for sql in LOAD_SQL:
                cur.execute(sql, params if "%(" in sql else None)
    return time.perf_counter() - started


@contextmanager
def model_defaults(connection):
    """The models' own defaults as column defaults while the SQL above runs.

    LOAD_SQL names the columns it fills; a column a later migration adds (NOT NULL,
    its default, or its blank text, known only to Django) would make its INSERT fail, so each such
    column gets its model default in the database for the load, removed after.
    """
    from django.db.models import NOT_PROVIDED

    from publications.models import Dataset, StateObject
    from servers.models import LagHour, Server, StatusReport

    added = []
    with connection.schema_editor(atomic=False) as editor:
        for model in (Dataset, StateObject, Server, StatusReport, LagHour):
            for field in model._meta.concrete_fields:
                # A text column with no default is blank in Django's eyes ("" when not given).
                blank_text = field.blank and field.empty_strings_allowed
                if field.primary_key or field.null or not (field.has_default() or blank_text):
                    continue
                if field.db_default is not NOT_PROVIDED:
                    continue
                table, column = editor.quote_name(model._meta.db_table), editor.quote_name(field.column)
                target = f"{table} ALTER COLUMN {column}"
                editor.execute(f"ALTER TABLE {target} SET DEFAULT %s", [editor.effective_default(field)])
                added.append(target)
    try:
        yield
    finally:
        with connection.schema_editor(atomic=False) as editor:
            for target in added:
                editor.execute(f"ALTER TABLE {target} DROP DEFAULT")
