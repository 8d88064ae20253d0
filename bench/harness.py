"""What the benchmarks share: a throw-away PostgreSQL database, a request-counting moto server, medians."""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dmsupdate.settings")
for name, value in (
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_DEFAULT_REGION", "us-east-1"),
):
    os.environ.setdefault(name, value)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def bench_database(suffix: str) -> Iterator[None]:
    """Django set up on a fresh database `bench_<name>_<suffix>`, dropped afterwards."""
    import django
    from django.conf import settings

    django.setup()
    import logging

    # Request logs of moto's server and boto3 would drown the figures.
    for noisy in ("werkzeug", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from django.test.utils import setup_databases, teardown_databases

    db = settings.DATABASES["default"]
    db.setdefault("TEST", {})["NAME"] = f"bench_{db['NAME']}_{suffix}"
    old = setup_databases(verbosity=0, interactive=False)
    try:
        yield
    finally:
        from django.db import connections

        connections.close_all()
        teardown_databases(old, verbosity=0)


class CountingMoto:
    """moto's S3 in server mode on loopback, counting the requests it serves by S3 action."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.calls: Counter[str] = Counter()
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> CountingMoto:
        self.server.start()
        wsgi = self.server._server  # the werkzeug server: wrap its app to see every request
        inner = wsgi.app

        def counting(environ, start_response):
            self.calls[_action(environ)] += 1
            return inner(environ, start_response)

        wsgi.app = counting
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop()

    def put_fast(self, bucket: str, keys: list[str], body: bytes = b"") -> None:
        """Fill a bucket without HTTP (moto's backend directly): setup, not part of any measure."""
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
        for key in keys:
            backend.put_object(bucket, key, body)


def index_listing(backend_class) -> None:
    """Answer ListObjectsV2 without a delimiter from the bucket's key names kept sorted (a bisection a page).

    moto sorts the whole bucket for every page; with a million keys a listing would
    take hours whatever the client. The pages are what moto would answer.
    """
    from bisect import bisect_left, bisect_right

    original = backend_class.list_objects_v2
    cache: dict[int, tuple[int, list[str]]] = {}

    def list_objects_v2(self, bucket, prefix, delimiter, continuation_token, start_after, max_keys):
        if delimiter:
            return original(self, bucket, prefix, delimiter, continuation_token, start_after, max_keys)
        size, names = cache.get(id(bucket), (-1, []))
        if size != len(bucket.keys):
            names = sorted(bucket.keys.keys())
            cache[id(bucket)] = (len(bucket.keys), names)
        after = self._pagination_tokens.get(continuation_token) if continuation_token else start_after
        i = bisect_right(names, after) if after else 0
        if prefix:
            i = max(i, bisect_left(names, prefix))
        page = []
        while i < len(names) and len(page) <= max_keys and names[i].startswith(prefix or ""):
            page.append(bucket.keys[names[i]])
            i += 1
        return self._truncate_result(page, max_keys)

    backend_class.list_objects_v2 = list_objects_v2


def _action(environ) -> str:
    method = environ.get("REQUEST_METHOD", "")
    query = environ.get("QUERY_STRING", "")
    if method == "POST" and "delete" in query.split("&")[0]:
        return "DeleteObjects"
    if method == "GET" and "list-type=2" in query:
        return "ListObjectsV2"
    return method


def median_of(runs: int, fn: Callable[[], float]) -> tuple[float, list[float]]:
    """Run `fn` (which returns seconds) `runs` times; the median and every figure."""
    figures = [fn() for _ in range(runs)]
    return statistics.median(figures), figures


class Clock:
    """`with Clock() as c: ...; c.seconds`."""

    def __enter__(self) -> Clock:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


def measure_in_subprocess(code: str, *args: str) -> dict[str, float]:
    """Run `code` in a fresh interpreter (repository on its path) and return the JSON its last line prints."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=3600,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip()[-500:])
    return json.loads(out.stdout.strip().splitlines()[-1])
