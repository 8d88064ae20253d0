"""A small HTTP-aware TCP proxy that injects faults between a client and a real server.

Each connection carries one request (the proxy asks for `Connection: close`
both ways), so a rule can act on one request line: answer an HTTP error
itself, cut the response after some bytes of its body, stall before
answering, or refuse to forward at all (the upstream looks gone).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.conftest import free_port

HEAD_LIMIT = 1 << 16


@dataclass
class Rule:
    """What to do with requests whose request line contains `match` (and the number of times left)."""

    match: str
    action: str  # "status" | "cut" | "stall" | "drop" | "pass" (forward; with `before`, after a side effect)
    times: int | None = None  # None: every matching request
    skip: int = 0  # matching requests let through untouched before the rule starts acting
    status: int = 503
    after_bytes: int = 0  # "cut": response bytes passed before the cut
    delay: float = 0.0  # "stall": seconds before forwarding
    before: Callable[[], None] | None = None  # run once when the rule first fires
    hits: int = 0

    def takes(self, request_line: str) -> bool:
        if self.match not in request_line or (self.times is not None and self.hits >= self.times):
            return False
        if self.skip > 0:
            self.skip -= 1
            return False
        self.hits += 1
        if self.hits == 1 and self.before is not None:
            self.before()
        return True


@dataclass
class FaultProxy:
    """Listens on 127.0.0.1:port and forwards to 127.0.0.1:upstream_port, applying the first matching rule."""

    upstream_port: int
    port: int = field(default_factory=free_port)
    rules: list[Rule] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", self.port))
        self._sock.listen(64)
        self._closed = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def close(self) -> None:
        self._closed = True
        self._sock.close()
        self._thread.join(5)

    def _serve(self) -> None:
        while not self._closed:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _rule_for(self, request_line: str) -> Rule | None:
        with self._lock:
            self.seen.append(request_line)
            for rule in self.rules:
                if rule.takes(request_line):
                    return rule
        return None

    def _handle(self, client: socket.socket) -> None:
        with client:
            client.settimeout(60)
            try:
                head, rest = _read_head(client)
            except OSError:
                return
            if not head:
                return
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            rule = self._rule_for(request_line)
            body = _read_body(client, head, rest)
            if rule is not None and rule.action == "status":
                _answer(client, rule.status)
                return
            if rule is not None and rule.action == "drop":
                return  # the connection closes with no answer: the server looks gone
            if rule is not None and rule.action == "stall":
                time.sleep(rule.delay)
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=60)
            except OSError:
                return  # upstream down: close without an answer, as a dead server would
            with upstream:
                upstream.sendall(_close_connection(head) + body)
                limit = rule.after_bytes if rule is not None and rule.action == "cut" else None
                _pipe_response(upstream, client, limit)


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return b"", b""
        data += chunk
        if len(data) > HEAD_LIMIT:
            return b"", b""
    head, rest = data.split(b"\r\n\r\n", 1)
    return head + b"\r\n\r\n", rest


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


def _read_body(sock: socket.socket, head: bytes, rest: bytes) -> bytes:
    """The request body as received: Content-Length bytes, or chunks up to the last one (kept encoded)."""
    if b"transfer-encoding: chunked" in head.lower():
        return _read_chunked(sock, rest)
    wanted = _content_length(head)
    body = rest
    while len(body) < wanted:
        chunk = sock.recv(min(65536, wanted - len(body)))
        if not chunk:
            break
        body += chunk
    return body


def _read_chunked(sock: socket.socket, data: bytes) -> bytes:
    # Walk the chunk headers; requests sends no trailers, so the body ends with "0\r\n\r\n".
    pos = 0
    while True:
        while b"\r\n" not in data[pos:]:
            more = sock.recv(65536)
            if not more:
                return data
            data += more
        line_end = data.index(b"\r\n", pos)
        size = int(data[pos:line_end].split(b";")[0], 16)
        end = line_end + 2 + size + 2
        while len(data) < end:
            more = sock.recv(65536)
            if not more:
                return data
            data += more
        pos = end
        if size == 0:
            return data[:end]


def _close_connection(head: bytes) -> bytes:
    lines = [
        line
        for line in head[:-4].split(b"\r\n")
        if line.split(b":", 1)[0].strip().lower() not in (b"connection", b"keep-alive")
    ]
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n"


def _answer(sock: socket.socket, status: int) -> None:
    reason = {500: "Internal Server Error", 503: "Service Unavailable"}.get(status, "Error")
    code = "SlowDown" if status == 503 else "InternalError"
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
        f"<Message>injected {status}</Message></Error>"
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    try:
        sock.sendall(head + body)
    except OSError:
        pass


def _pipe_response(upstream: socket.socket, client: socket.socket, body_limit: int | None) -> None:
    """Copy the response; with `body_limit`, stop after that many body bytes and drop the connection."""
    passed_head = False
    body_sent = 0
    buffer = b""
    try:
        while True:
            chunk = upstream.recv(65536)
            if not chunk:
                if buffer:
                    client.sendall(buffer)
                return
            if not passed_head:
                buffer += chunk
                if b"\r\n\r\n" not in buffer:
                    continue
                head, chunk = buffer.split(b"\r\n\r\n", 1)
                # The client must not reuse this connection: the proxy serves one request each.
                client.sendall(_close_connection(head + b"\r\n\r\n"))
                buffer = b""
                passed_head = True
            if body_limit is None:
                client.sendall(chunk)
                continue
            room = body_limit - body_sent
            client.sendall(chunk[:room])
            body_sent += min(len(chunk), room)
            if body_sent >= body_limit:
                client.shutdown(socket.SHUT_RDWR)
                return
    except OSError:
        return
