"""A real HTTP receiver of webhooks on loopback: records each request, answers with the statuses it is given."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Receiver:
    statuses: list[int] = field(default_factory=list)  # answered in turn; 200 once they run out
    received: list[dict] = field(default_factory=list)
    hang: threading.Event | None = None  # set: requests wait until it is set
    url: str = ""


@contextmanager
def receiver(statuses: list[int] | None = None, hang: bool = False) -> Iterator[Receiver]:
    box = Receiver(list(statuses or []), hang=threading.Event() if hang else None)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            box.received.append({"path": self.path, "headers": dict(self.headers), "body": body})
            if box.hang is not None:
                box.hang.wait(30)
            status = box.statuses.pop(0) if box.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    box.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield box
    finally:
        if box.hang is not None:
            box.hang.set()
        server.shutdown()
        server.server_close()
