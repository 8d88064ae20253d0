"""Small local HTTP servers the agent talks to in tests: a recorder, a throttler, a gate."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# An answer that reads as SPARQL results of every kind (no rows; ASK true): for a fake store.
SPARQL_OK: dict[str, Any] = {"head": {"vars": []}, "results": {"bindings": []}, "boolean": True}


@dataclass
class Recorded:
    """What a local server received, and how it answers."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    gate: threading.Event | None = None  # when set, requests wait for it before answering
    answer: dict[str, Any] | None = None  # JSON body of each answer (default: {"ok": ...})


@contextmanager
def local_server(behaviour: Recorded) -> Iterator[str]:
    """Run a ThreadingHTTPServer on a free loopback port; yield its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            behaviour.requests.append(
                {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
            )
            if behaviour.gate is not None:
                behaviour.gate.wait(30)
            answer = behaviour.answer if behaviour.answer is not None else {"ok": behaviour.status < 400}
            payload = json.dumps(answer).encode()
            self.send_response(behaviour.status)
            for name, value in behaviour.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = _handle  # noqa: N815

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        if behaviour.gate is not None:
            behaviour.gate.set()
        server.shutdown()
        server.server_close()
