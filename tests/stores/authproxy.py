"""A loopback reverse proxy in front of `oxigraph serve`: basic auth, Fuseki's paths, chunked bodies dropped.

`oxigraph serve` has no authentication, so the tests put this in front of it:
- every request must carry `Authorization: Basic` for the one user (401 otherwise);
- Fuseki's layout is served on top of Oxigraph's: `/ds/query`, `/ds/update`,
  `/ds/data` → `/query`, `/update`, `/store` (the other paths pass as they are);
- a chunked request body (no `Content-Length`) is read and answered 204 without
  being forwarded, as Virtuoso does: an agent that sends chunked bodies stores nothing;
- each write (Graph Store PUT/POST/DELETE, SPARQL Update) is recorded with a digest
  of its body, and `after_write` (when set) is called once it has been applied.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

PATHS = {"/ds/query": "/query", "/ds/update": "/update", "/ds/data": "/store"}


@dataclass
class ProxyLog:
    writes: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path?query, body sha256)
    chunked: int = 0
    unauthorised: int = 0
    after_write: Callable[[int], None] | None = None


class AuthProxy:
    def __init__(self, upstream: str, username: str, password: str) -> None:
        self.upstream = upstream
        self.log = ProxyLog()
        expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        log = self.log
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _body(self) -> tuple[bytes, bool]:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"", True
                        self.rfile.read(size + 2)
                length = int(self.headers.get("Content-Length") or 0)
                return (self.rfile.read(length) if length else b""), False

            def _handle(self) -> None:
                body, chunked = self._body()
                if self.headers.get("Authorization") != expected:
                    log.unauthorised += 1
                    self._reply(401, b"unauthorised", {"WWW-Authenticate": 'Basic realm="store"'})
                    return
                if chunked:
                    log.chunked += 1
                    self._reply(204)
                    return
                path, _, query = self.path.partition("?")
                target = f"{upstream}{PATHS.get(path, path)}" + (f"?{query}" if query else "")
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "accept")}
                r = requests.request(self.command, target, data=body, headers=headers, timeout=300)
                is_write = self.command in ("PUT", "DELETE") or (
                    self.command == "POST" and PATHS.get(path, path) in ("/update", "/store")
                )
                if is_write and r.status_code < 300:
                    with lock:
                        log.writes.append((self.command, self.path, hashlib.sha256(body).hexdigest()))
                        n = len(log.writes)
                    if log.after_write is not None:
                        log.after_write(n)
                out = {"Content-Type": r.headers["Content-Type"]} if "Content-Type" in r.headers else {}
                self._reply(r.status_code, r.content, out)

            do_GET = do_POST = do_PUT = do_DELETE = _handle  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
