"""Cheap polling: the control plane's CPU per head/ poll (304 path), and S3 LIST calls of an idle fleet.

1. Per-poll CPU. GET /api/v1/datasets/{name}/head/ with the ETag the agent holds
   (answered 304) straight through the WSGI application (every middleware, as
   gunicorn calls it), each from its own agent token (a
   fleet: 300 agents' tokens in turn, each round of them a minute of polls of
   agents polling once a minute; a token's use is noted at most every five
   minutes, so before each round a different sixth of the tokens is made due,
   and one poll in six notes its token's use, as in that steady state), with
   production settings (`DEBUG` off).
   The CPU is this process's (time.process_time: routing, authentication, the
   throttle, the view) plus the PostgreSQL backend's (utime + stime from
   /proc/PID/stat), per poll. 1,000 agents polling once a minute make 16.7 polls
   a second: the share of one core is 16.7 × the CPU of one poll. (HTTP parsing by
   the WSGI server is not included; gunicorn's is a few tens of microseconds.)
2. An idle fleet. Agents (`watch` rounds, embedded stores) with `controlplane` set
   poll a live control plane (a WSGI server on loopback) for a dataset on the moto
   server; ListObjectsV2 calls are counted on the moto side over idle rounds (no
   publication), then over the round after one publication.

    python -m bench.bench_head_polling [--runs R] [--polls N] [--agents A]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

from bench.harness import CountingMoto, bench_database
from bench.report import Outcome, judged, run_standalone

TOKENS = 300
FLEET_POLLS_PER_SECOND = 1000 / 60


def backend_pid(connection) -> int:
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        return cur.fetchone()[0]


def backend_cpu(pid: int) -> float:
    """CPU seconds the PostgreSQL backend `pid` has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def call(app, path: str, key: str, etag: str | None = None) -> tuple[str, list]:
    """One request straight through the WSGI application, as a WSGI server hands it over."""
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "localhost",
        "HTTP_AUTHORIZATION": f"Token {key}",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if etag:
        environ["HTTP_IF_NONE_MATCH"] = etag
    answer: list = []
    body = app(environ, lambda status, headers, *exc: answer.extend([status, headers]))
    b"".join(body)
    body.close()
    return answer[0], answer[1]


def per_poll_cpu(runs: int, polls: int) -> tuple[list[float], list[float], float]:
    """CPU ms per 304 poll (this process, and with the database backend), each run; and one 200 answer's."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.handlers.wsgi import WSGIHandler
    from django.db import connection, connections
    from django.utils import timezone

    from accounts.authentication import LAST_USED_EVERY
    from accounts.models import ApiToken, Role
    from publications.models import Dataset
    from servers.models import Server

    # Production settings: with debug on, Django would also keep the SQL of every query.
    settings.DEBUG = False
    dataset = Dataset.objects.create(name="polled", s3root="file:///srv/state/polled")
    keys = []
    for n in range(TOKENS):
        server = Server.objects.create(name=f"agent-{n}", dataset=dataset)
        user = get_user_model().objects.create(username=f"agent-{n}")
        keys.append(ApiToken.issue(user, Role.AGENT, server=server)[1])
    url = "/api/v1/datasets/polled/head/"
    app = WSGIHandler()
    etag = dict(call(app, url, keys[0])[1])["ETag"]
    start = time.process_time()
    for _ in range(50):
        assert call(app, url, keys[0])[0].startswith("200")
    full_ms = (time.process_time() - start) / 50 * 1000
    # Each round of the tokens is a minute of the fleet's polls. A token's use is noted at
    # most every N minutes, so in the steady state one token in k = N + 1 is due each round,
    # a different one each time: before each round those are set as last noted k minutes ago
    # (the others were noted within N), on a connection of its own (its backend's CPU is not
    # the polls') and outside the clocks.
    side = connections.create_connection("default")
    k = int(LAST_USED_EVERY.total_seconds() // 60) + 1
    tokens = ApiToken._meta.db_table
    with side.cursor() as cur:
        cur.execute(f"UPDATE {tokens} SET last_used_at = %s", [timezone.now()])
    due = f"UPDATE {tokens} SET last_used_at = %s WHERE id %% {k} = %s"
    rounds = 0
    pid = backend_pid(connection)
    web_ms, total_ms = [], []
    for _ in range(runs):
        web = db = 0.0
        for first in range(0, polls, TOKENS):
            with side.cursor() as cur:
                cur.execute(due, [timezone.now() - timedelta(minutes=k), rounds % k])
            rounds += 1
            db_before, start = backend_cpu(pid), time.process_time()
            for n in range(first, min(first + TOKENS, polls)):
                status, _ = call(app, url, keys[n % TOKENS], etag)
                assert status.startswith("304"), status
            web += time.process_time() - start
            db += backend_cpu(pid) - db_before
        web_ms.append(web / polls * 1000)
        total_ms.append((web + db) / polls * 1000)
    side.close()
    return web_ms, total_ms, full_ms


def idle_fleet(runs: int, agents: int) -> tuple[list[int], int, int]:
    """LIST calls over idle rounds of the whole fleet (each run), at start, and in the round after a publication."""
    import logging

    from django.contrib.auth import get_user_model
    from django.core.handlers.wsgi import WSGIHandler
    from django.db import connection
    from werkzeug.serving import make_server

    from accounts.models import ApiToken, Role
    from dmsupdate.agent.config import Config
    from dmsupdate.agent.runner import Runner
    from dmsupdate.agent.watch import Watcher
    from dmsupdate.state.keys import EffectiveTime, format_key
    from publications.models import Dataset
    from publications.sync import sync_dataset
    from servers.models import Server

    logging.getLogger("dmsupdate.agent").setLevel(logging.ERROR)
    logging.getLogger("publications.sync").setLevel(logging.WARNING)
    handler = WSGIHandler()

    def app(environ, start_response):
        # Each request thread's connection is closed with it (the database is dropped afterwards).
        try:
            return list(handler(environ, start_response))
        finally:
            connection.close()

    web = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    control = f"http://127.0.0.1:{web.server_port}"
    tmp = Path(tempfile.mkdtemp(prefix="bench-head-"))
    with CountingMoto() as moto:
        import boto3

        boto3.client("s3", endpoint_url=moto.url).create_bucket(Bucket="idle")
        dataset = Dataset.objects.create(name="idle", s3root="s3://idle/dms", s3endpoint=moto.url)
        store = dataset.open_store()
        dump = b""  # an empty dump: the agents bootstrap from it
        import gzip

        body = gzip.compress(dump)
        store.put_new(
            format_key(EffectiveTime.now(), "base", "dump", None, "nq.gz"), io.BytesIO(body), len(body)
        )
        sync_dataset(dataset)
        watchers = []
        for n in range(agents):
            server = Server.objects.create(name=f"idle-{n}", dataset=dataset)
            user = get_user_model().objects.create(username=f"idle-{n}")
            key = ApiToken.issue(user, Role.AGENT, server=server)[1]
            config = Config.from_dict(
                {
                    "s3root": "s3://idle/dms",
                    "s3endpoint": moto.url,
                    "dblocation": str(tmp / f"db-{n}"),
                    "dbname": "DB",
                    "logArea": str(tmp / f"log-{n}"),
                    "controlplane": {"url": control, "server": f"idle-{n}", "token": key, "dataset": "idle"},
                }
            )
            watchers.append(Watcher(Runner(config), interval=60, sleep=lambda s: None))
        moto.calls.clear()
        for w in watchers:
            w.run_once()
        at_start = moto.calls["ListObjectsV2"]
        idle = []
        for _ in range(runs):
            moto.calls.clear()
            for _ in range(10):
                for w in watchers:
                    w.run_once()
            idle.append(moto.calls["ListObjectsV2"])
        update = b"INSERT DATA { <http://example.org/a> <http://example.org/b> 1 }"
        key = format_key(EffectiveTime.now(), "feed", "update", None, "ru")
        store.put_new(key, io.BytesIO(update), len(update))
        sync_dataset(dataset)
        moto.calls.clear()
        for w in watchers:
            w.run_once()
        after = moto.calls["ListObjectsV2"]
        assert all(key in w.runner.status()["recent"] for w in watchers)
    web.shutdown()
    return idle, at_start, after


def main(argv: list[str] | None = None) -> Outcome:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--polls", type=int, default=2000)
    parser.add_argument("--agents", type=int, default=10)
    args = parser.parse_args(argv or [])
    with bench_database("head"):
        web_ms, total_ms, full_ms = per_poll_cpu(args.runs, args.polls)
        idle, at_start, after = idle_fleet(3, args.agents)
    share = [ms / 1000 * FLEET_POLLS_PER_SECOND * 100 for ms in total_ms]
    targets = [
        judged(
            "head/ poll answered 304: CPU per poll (web process + database backend)",
            "ms",
            total_ms,
            "< 1.2 ms (2 % of a core at 1,000 agents a minute)",
            at_most=1.2,
            note=f"web process alone {statistics.median(web_ms):.2f} ms; a 200 answer {full_ms:.2f} ms (web)",
        ),
        judged("1,000 agents polling head/ once a minute: share of one core", "%", share, "< 2 %", at_most=2),
        judged(
            f"Idle fleet ({args.agents} agents × 10 rounds): S3 ListObjectsV2 calls between publications",
            "calls",
            idle,
            "0",
            at_most=0,
            rule="worst",
            note=f"{at_start} at start (each agent's first run), {after} in the round after one publication",
        ),
    ]
    details = [
        f"Per-poll CPU over {args.polls:,} polls a run from {TOKENS} agent tokens (ms per poll):",
        "",
        "| run | web process | web + database | share of a core at 1,000 agents/min |",
        "|---|---|---|---|",
    ]
    details += [
        f"| {n} | {w:.3f} | {t:.3f} | {s:.2f} % |"
        for n, (w, t, s) in enumerate(zip(web_ms, total_ms, share, strict=True), 1)
    ]
    details += [
        "",
        f"Idle fleet of {args.agents} agents: ListObjectsV2 calls per 10 idle rounds: {idle}; "
        f"at start: {at_start}; after one publication: {after} (one listing per agent).",
    ]
    for line in details:
        print(line)
    return Outcome(targets, details, args.runs)


if __name__ == "__main__":
    raise SystemExit(run_standalone("bench_head_polling", main, sys.argv[1:]))
