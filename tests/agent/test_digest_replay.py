"""Digest auth answers a request with a stale nonce 401: the upload must be sent again whole, with its length."""

from __future__ import annotations

import json
import re
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from dmsupdate.agent.runner import Runner
from tests.agent.conftest import ttl

G = "http://example.org/graph/g"


def test_each_upload_challenged_by_digest_is_sent_again_whole(file_state, make_config):
    file_state.publish_dump(0, [])
    body = ttl(*(f"ex:s{i} ex:p ex:o{i} ." for i in range(3000)))
    file_state.publish(10, "add", body, arg=G, fmt="ttl.gz")
    file_state.publish(20, "replace", body, arg=G + "2", fmt="ttl")  # another graph: the add is not pruned
    accepted: list[dict[str, Any]] = []
    challenged = [0]
    nonce = [secrets.token_hex(8)]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            length = self.headers.get("Content-Length")
            data = self.rfile.read(int(length)) if length else b""
            given = re.search(r'nonce="([0-9a-f]+)"', self.headers.get("Authorization", ""))
            if given is None or given.group(1) != nonce[0]:
                challenged[0] += 1
                self.send_response(401)
                self.send_header(
                    "WWW-Authenticate", f'Digest realm="store", nonce="{nonce[0]}", qop="auth", stale=true'
                )
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            nonce[0] = secrets.token_hex(8)  # every nonce is good for one request: the next one is challenged
            accepted.append({"method": self.command, "path": self.path, "length": length, "body": data})
            payload = json.dumps({"head": {}, "results": {"bindings": []}, "boolean": True}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = _handle  # noqa: N815

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        config = make_config(
            file_state,
            service=f"{base}/ds",
            auth={"scheme": "digest", "username": "agent", "password": "pw"},
            verify="off",
        )
        status = Runner(config).update()
    finally:
        server.shutdown()
        server.server_close()

    assert status["lastSucceeded"] is True, status
    uploads = [r for r in accepted if r["path"].startswith("/ds/data?graph=http")]
    assert [r["method"] for r in uploads] == ["POST", "PUT"]
    for upload in uploads:
        assert upload["body"] == body.encode() and upload["length"] == str(len(body.encode()))
    assert challenged[0] >= len(accepted)  # every accepted request was challenged first
