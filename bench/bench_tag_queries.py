"""Tag queries of the object registry on 1,000,000 objects: GET /api/v1/objects/ with tags_all, tags_exclude, day: + a tag.

The data set (kept in its own database `<name>_tags`, generated in SQL once): one
dataset of 1,000,000 published updates, one every 10 s (116 days), each with its
date tags (hour, day, ISO week, month, as sync_state and publishing write them)
and the tags a publisher would give: `src-0` … `src-9` (a tenth each),
`checked` (every other ten objects: half of each `src-`) and `flagged` (one in 97).

Each query is the whole API request (Django's test client: routing, token
authentication, throttle, the bounded count and the first page of 50 rows,
JSON), against raw SQL doing the same two queries with psycopg (the count,
exact up to 1,000 with a tag filter, and the page), alternated, warm, 15 requests a run, median per request.
The plan PostgreSQL chose for each is printed (docs/benchmarks.md shows it).

    python -m bench.bench_tag_queries [--runs R] [--objects N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from bench.fleet_data import fleet_database
from bench.report import Outcome, Target, alternated, judged, run_standalone

REQUESTS_PER_RUN = 15
QUERIES = {
    "tags_all of two tags (src-3, checked)": {"tags_all": "src-3,checked"},
    "tags_exclude of one tag (checked)": {"tags_exclude": "checked"},
    "day: plus a tag (day:…, src-3)": {"tags_all": "DAY,src-3"},
}
LOAD_SQL = """
WITH params AS (
    SELECT (extract(epoch FROM now()) * 1e9)::bigint - %(objects)s::bigint * 10 * 1000000000::bigint AS base
), rows AS (
    SELECT i, params.base + i::bigint * 10 * 1000000000::bigint AS eff FROM params, generate_series(1, %(objects)s) AS i
), timed AS (
    SELECT i, eff, to_timestamp(eff / 1e9) AT TIME ZONE 'UTC' AS t FROM rows
)
INSERT INTO publications_stateobject (dataset_id, key, kind, op, label, effective_ns, effective_at, arg, format,
    size, etag, sha256, state, error, first_seen, last_seen, state_changed_at, tags)
SELECT %(dataset)s,
    'updates/' || to_char(t, 'YYYY-MM-DD/HH24-MI-SS') || '-000000000/readings_update.ru',
    'update', 'update', 'readings', eff, to_timestamp(eff / 1e9), '', 'ru', 100, '', '', 'published', '',
    now(), now(), now(),
    ARRAY['day:' || to_char(t, 'YYYY-MM-DD'), 'hour:' || to_char(t, 'YYYY-MM-DD"T"HH24'),
          'month:' || to_char(t, 'YYYY-MM'), 'week:' || to_char(t, 'IYYY-"W"IW'), 'src-' || (i %% 10)]
      || CASE WHEN (i / 10) %% 2 = 0 THEN ARRAY['checked'] ELSE ARRAY[]::text[] END
      || CASE WHEN i %% 97 = 0 THEN ARRAY['flagged'] ELSE ARRAY[]::text[] END
FROM timed
"""


def ensure_tagged(connection, objects: int):
    """The tagged dataset, built once and kept."""
    from publications.models import Dataset, StateObject

    dataset = Dataset.objects.filter(name="tagged").first()
    rows = StateObject.objects.filter(dataset=dataset)
    if (
        dataset is not None
        and rows.count() == objects
        and rows.filter(tags__has_all=["src-3", "checked"]).exists()
    ):
        return dataset
    print(f"  building the tagged data set: {objects:,} objects (kept for later runs)", flush=True)
    with connection.cursor() as cur:
        # Loaded without the GIN index, which is built once afterwards (as a restore would).
        cur.execute("DROP INDEX IF EXISTS object_tags_gin")
        if dataset is not None:
            cur.execute("DELETE FROM publications_stateobject WHERE dataset_id = %s", [dataset.pk])
        else:
            dataset = Dataset.objects.create(name="tagged", s3root="file:///srv/state/tagged")
        cur.execute(LOAD_SQL, {"objects": objects, "dataset": dataset.pk})
        cur.execute("CREATE INDEX object_tags_gin ON publications_stateobject USING gin (tags)")
        cur.execute("VACUUM ANALYZE publications_stateobject")
    return dataset


def busiest_day(dataset) -> str:
    from publications.models import StateObject

    newest = (
        StateObject.objects.filter(dataset=dataset)
        .order_by("-effective_ns")
        .values_list("tags", flat=True)[5000]
    )
    return next(t for t in newest if t.startswith("day:"))


def raw_sql(query: dict[str, str]) -> tuple[str, list]:
    """The bounded count and the page's query, as the API runs them, in plain SQL."""
    where, params = ["dataset_id = %s"], []
    if "tags_all" in query:
        where.append("tags @> %s::text[]")
        params.append(sorted(query["tags_all"].split(",")))
    if "tags_exclude" in query:
        where.append("NOT (tags && %s::text[])")
        params.append(sorted(query["tags_exclude"].split(",")))
    return " AND ".join(where), params


def _api_side(client, query: dict[str, str]):
    def api() -> float:
        start = time.perf_counter()
        for _ in range(REQUESTS_PER_RUN):
            answer = client.get("/api/v1/objects/", {"dataset": "tagged", "limit": 50, **query})
            assert answer.status_code == 200, answer.content
        return (time.perf_counter() - start) / REQUESTS_PER_RUN * 1000

    return api


def _raw_side(connection, count_sql: str, page_sql: str, args: list):
    def raw() -> float:
        start = time.perf_counter()
        with connection.cursor() as cur:
            for _ in range(REQUESTS_PER_RUN):
                cur.execute(count_sql, args)
                cur.fetchall()
                cur.execute(page_sql, args)
                cur.fetchall()
        return (time.perf_counter() - start) / REQUESTS_PER_RUN * 1000

    return raw


def measure(runs: int, objects: int) -> tuple[dict, dict]:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from rest_framework.test import APIClient

    from accounts.models import ApiToken, Role

    dataset = ensure_tagged(connection, objects)
    day = busiest_day(dataset)
    user, _ = get_user_model().objects.get_or_create(username="bench-viewer")
    ApiToken.objects.filter(user=user).delete()
    figures, plans = {}, {}
    for name, raw_query in QUERIES.items():
        # A token per query: the requests of one stay within a token's rate limit.
        _, key = ApiToken.issue(user, Role.VIEWER)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        query = {k: v.replace("DAY", day) for k, v in raw_query.items()}
        where, params = raw_sql(query)
        count_sql = (
            f"SELECT count(*) FROM (SELECT 1 FROM publications_stateobject WHERE {where} LIMIT 1001) t"
        )
        page_sql = (
            f"SELECT id, key, kind, op, label, effective_ns, arg, format, size, etag, sha256, state, error,"
            f" first_seen, last_seen, state_changed_at, tags FROM publications_stateobject WHERE {where}"
            " ORDER BY dataset_id, key LIMIT 51"
        )
        api = _api_side(client, query)
        raw = _raw_side(connection, count_sql, page_sql, [dataset.pk, *params])
        answer = client.get("/api/v1/objects/", {"dataset": "tagged", "limit": 50, **query}).json()
        sides = alternated({"api": api, "raw": raw}, runs)
        cpu = time.process_time()
        api()
        sides["cpu"] = (time.process_time() - cpu) / REQUESTS_PER_RUN * 1000
        with connection.cursor() as cur:
            cur.execute("EXPLAIN " + count_sql, [dataset.pk, *params])
            plans[name] = [row[0] for row in cur.fetchall()]
        figures[name] = {**sides, "count": answer["count"], "query": query}
    return figures, plans


def main(argv: list[str] | None = None) -> Outcome:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--objects", type=int, default=1_000_000)
    args = parser.parse_args(argv or [])
    fleet_database("tags")
    figures, plans = measure(args.runs, args.objects)
    targets: list[Target] = []
    details = [
        f"{args.objects:,} objects in one dataset; each figure a median of {args.runs} runs of "
        f"{REQUESTS_PER_RUN} requests (first page of 50 rows and the count, exact up to 1,000 with a tag filter).",
        "",
        "| query | matches | API median | API spread | raw SQL median | ratio | web process CPU per request |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, fig in figures.items():
        api_ms, raw_ms = statistics.median(fig["api"]), statistics.median(fig["raw"])
        count = "more than 1,000" if fig["count"] is None else f"{fig['count']:,}"
        targets.append(
            judged(
                f"Objects API, {name}, {args.objects:,} objects",
                "ms",
                fig["api"],
                "< 50 ms",
                at_most=50,
                note=f"raw SQL (count + page) {raw_ms:.1f} ms",
            )
        )
        targets.append(
            Target(
                f"Objects API, {name}: time vs raw SQL",
                "x",
                [a / r for a, r in zip(fig["api"], fig["raw"], strict=True)],
                "none set (shown)",
                None,
            )
        )
        details.append(
            f"| `{'&'.join(f'{k}={v}' for k, v in fig['query'].items())}` | {count} | {api_ms:.1f} ms | "
            f"{min(fig['api']):.1f} – {max(fig['api']):.1f} ms | {raw_ms:.1f} ms | {api_ms / raw_ms:.2f}× | "
            f"{fig['cpu']:.1f} ms |"
        )
    details += ["", "Plans PostgreSQL chose for the bounded count:", ""]
    for name, plan in plans.items():
        details += [f"- {name}:", "", "```", *plan, "```", ""]
    for line in details:
        print(line)
    return Outcome(targets, details, args.runs)


if __name__ == "__main__":
    raise SystemExit(run_standalone("bench_tag_queries", main, sys.argv[1:]))
