"""Simulated `dms-update serve` endpoints: many agents in one process, each taking a set time per update.

Each agent listens on its own loopback port and answers like the real serve
endpoint: `GET /status` with status.json plus `running`, `POST /update?wait=N`
holding the answer until its simulated run ends (200 with the new status).
Agent i takes `fastest + (slowest - fastest) * i / (count - 1)` seconds, so the
slowest agent's own time is known exactly. Started by bench_trigger_fleet:

    python -m bench.simulated_agents COUNT FASTEST SLOWEST TOKEN PORTS_FILE

All agents share one event loop: a thread per agent (and per request) would make
the simulation itself slow when 1,000 calls arrive at once (each woken thread
waiting its turn for the interpreter), and that time would be counted against
the control plane. The ports are written to PORTS_FILE as a JSON list once every
agent listens; the process serves until it is terminated.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path


class Agent:
    """One simulated agent: its run time, its status and a lock for one run at a time."""

    def __init__(self, seconds: float, token: str) -> None:
        self.seconds = seconds
        self.token = token
        self.lock = asyncio.Lock()
        self.applied = 0
        self.status = {"effectiveDate": None, "lastSucceeded": None, "lastUpdate": None, "applied": []}

    async def run(self) -> dict:
        async with self.lock:
            await asyncio.sleep(self.seconds)
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

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """HTTP/1.1 requests on one connection, answered in turn, until the client closes it."""
        try:
            while line := await reader.readline():
                method = line.split(b" ", 1)[0]
                headers = {}
                while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = header.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                if length := int(headers.get("content-length") or 0):
                    await reader.readexactly(length)
                if headers.get("authorization") != f"Bearer {self.token}":
                    code, body = "401 Unauthorized", {"error": "unauthorized"}
                elif method == b"POST":
                    code, body = "200 OK", await self.run()
                else:
                    code, body = "200 OK", dict(self.status, running=self.lock.locked())
                data = json.dumps(body).encode()
                head = f"HTTP/1.1 {code}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
                writer.write(head.encode() + data)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away: nothing to answer
        finally:
            writer.close()


async def serve(count: int, fastest: float, slowest: float, token: str, ports_file: str) -> None:
    servers = []
    for i in range(count):
        agent = Agent(fastest + (slowest - fastest) * i / max(1, count - 1), token)
        servers.append(await asyncio.start_server(agent.serve, "127.0.0.1", 0))
    Path(ports_file).write_text(json.dumps([s.sockets[0].getsockname()[1] for s in servers]))
    await asyncio.Event().wait()


def main(argv: list[str]) -> int:
    count, fastest, slowest, token, ports_file = (
        int(argv[0]),
        float(argv[1]),
        float(argv[2]),
        argv[3],
        argv[4],
    )
    asyncio.run(serve(count, fastest, slowest, token, ports_file))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
