"""Shared fixtures: real S3 over HTTP (moto server), state roots, an Oxigraph server, people."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytest_plugins = ["tests.api.fixtures"]

ROOT = Path(__file__).resolve().parent.parent


def _flush_past_the_audit_trigger() -> None:
    """Test databases are emptied between transactional tests by TRUNCATE, which the audit log refuses.

    Only the tests' flush lifts the trigger, within its own transaction.
    """
    from django.db.backends.postgresql.operations import DatabaseOperations

    original = DatabaseOperations.sql_flush

    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        statements = original(
            self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade
        )
        if "audit_auditevent" not in tables or not statements:
            return statements
        trigger = "TRIGGER audit_event_no_truncate"
        return [
            f"ALTER TABLE audit_auditevent DISABLE {trigger}",
            *statements,
            f"ALTER TABLE audit_auditevent ENABLE {trigger}",
        ]

    DatabaseOperations.sql_flush = sql_flush


_flush_past_the_audit_trigger()
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@pytest.fixture(scope="session")
def moto_server():
    """A real S3 endpoint over HTTP (moto's server mode); yields its URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    wait_for_port(port)
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_root(moto_server):
    """A fresh bucket on the moto server; yields (root, endpoint)."""
    import boto3

    bucket = f"state-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_server).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/dms", moto_server


@pytest.fixture
def file_root(tmp_path):
    """A fresh local-directory state root; yields (root, None)."""
    base = tmp_path / "state"
    base.mkdir()
    return f"file://{base}", None


@pytest.fixture(params=["file", "s3"])
def any_root(request):
    """Each test using this runs once on a `file://` root and once on the moto server."""
    if request.param == "file":
        return request.getfixturevalue("file_root")
    return request.getfixturevalue("s3_root")


@pytest.fixture
def oxigraph_server(tmp_path):
    """A real `oxigraph serve` process on loopback; yields its base URL (…/query, /update, /store)."""
    exe = shutil.which("oxigraph") or str(Path(sys.executable).parent / "oxigraph")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "serve", "--location", str(tmp_path / "oxigraph-server"), "--bind", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
