"""Simulated `dms-update serve` endpoints: many agents in one process, each taking a set time per update.

Each agent listens on its own loopback port and answers like the real serve
endpoint: `GET /status` with status.json plus `running`, `POST /update?wait=N`
holding the answer until its simulated run ends (200 with the new status).
Agent i takes `fastest + (slowest - fastest) * i / (count - 1)` seconds, so the
slowest agent's own time is known exactly. Started by bench_trigger_fleet:

    python -m bench.simulated_agents COUNT FASTEST SLOWEST TOKEN PORTS_FILE

The ports are written to PORTS_FILE as a JSON list once every agent listens;
the process serves until it is terminated.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Agent:
    """One simulated agent: its run time, its status and a lock for one run at a time."""

    def __init__(self, seconds: float, token: str) -> None:
        self.seconds = seconds
        self.token = token
        self.lock = threading.Lock()
        self.applied = 0
        self.status = {"effectiveDate": None, "lastSucceeded": None, "lastUpdate": None, "applied": []}

    def run(self) -> dict:
        with self.lock:
            time.sleep(self.seconds)
            self.applied += 1
            now = datetime.now(UTC)
            self.status = {
                "effectiveDate": now.strftime("%Y-%m-%dT%H:%M:%S.%f000Z"),
                "lastSucceeded": True,
                "lastUpdate": now.isoformat(),
                "applied": [f"updates/simulated/{self.applied}"],
                "lastRun": "update",
            }
            return dict(self.status, running=False)


def handler_for(agent: Agent) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet: 200 agents
            pass

        def _answer(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorised(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {agent.token}":
                return True
            self._answer(401, {"error": "unauthorized"})
            return False

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self._authorised():
                self._answer(200, dict(agent.status, running=agent.lock.locked()))

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            if self._authorised():
                self._answer(200, agent.run())

    return Handler


def main(argv: list[str]) -> int:
    count, fastest, slowest, token, ports_file = (
        int(argv[0]),
        float(argv[1]),
        float(argv[2]),
        argv[3],
        argv[4],
    )
    servers = []
    for i in range(count):
        seconds = fastest + (slowest - fastest) * i / max(1, count - 1)
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(Agent(seconds, token)))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 1.0}, daemon=True).start()
        servers.append(server)
    Path(ports_file).write_text(json.dumps([s.server_address[1] for s in servers]))
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
