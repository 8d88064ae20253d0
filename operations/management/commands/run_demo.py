"""`manage.py run_demo`: serve the demo built by `manage.py demo` until Ctrl-C.

Starts the web server, a django-q2 worker and one `dms-update serve` per demo
server, each in a process group of its own, and stops every group on Ctrl-C
or SIGTERM so nothing is left running.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from operations.demo import DATASET, demo_dir

STOP_TIMEOUT = 15.0
PR_SET_PDEATHSIG = 1


@dataclass
class Child:
    """A process run_demo started, with its log file."""

    name: str
    proc: subprocess.Popen
    log: Path


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if run_demo itself dies (even by SIGKILL)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: the process group clean-up below still applies


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Command(BaseCommand):
    help = "Start the web server, a qcluster worker and the demo's agents; Ctrl-C stops them all."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--port", type=int, help="web server port (default: the one `demo` was built for, usually 8000)"
        )

    def handle(self, *args, port: int | None = None, **options) -> None:
        from servers.models import Server

        manifest_path = demo_dir() / "demo.json"
        if not manifest_path.is_file():
            raise CommandError(f"no demo under {demo_dir()}: run `manage.py demo` first")
        manifest = json.loads(manifest_path.read_text())
        port = port or int(manifest["port"])
        if _port_taken(port):
            raise CommandError(
                f"port {port} is in use: stop what listens there, or rebuild the demo with `demo --port N`"
            )
        servers = list(Server.objects.filter(dataset__name=DATASET).order_by("name"))
        if not servers:
            raise CommandError("the demo's servers are not in the registry: run `manage.py demo` again")
        logs = demo_dir() / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONPATH": str(settings.BASE_DIR), "PYTHONUNBUFFERED": "1"}
        manage = str(Path(settings.BASE_DIR) / "manage.py")
        plan = [
            ("web", [sys.executable, manage, "runserver", f"127.0.0.1:{port}", "--noreload"]),
            ("qcluster", [sys.executable, manage, "qcluster"]),
        ]
        for server in servers:
            agent_port = _free_port()
            config = demo_dir() / "agents" / server.name / "config.json"
            bind = f"127.0.0.1:{agent_port}"
            plan.append(
                (
                    server.name,
                    [
                        sys.executable,
                        "-m",
                        "dmsupdate.agent",
                        "--config",
                        str(config),
                        "serve",
                        "--bind",
                        bind,
                    ],
                )
            )
            # The control plane reaches the agent here for triggered updates and rebuilds.
            Server.objects.filter(pk=server.pk).update(agent_url=f"http://{bind}")

        children: list[Child] = []
        stopping = False

        def stop(signum, frame) -> None:
            nonlocal stopping
            stopping = True

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            for name, argv in plan:
                log = logs / f"{name}.log"
                out = open(log, "ab")  # noqa: SIM115 - closed when the child is stopped
                proc = subprocess.Popen(
                    argv,
                    cwd=settings.BASE_DIR,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own group: Ctrl-C reaches run_demo only, which stops it
                    preexec_fn=_die_with_parent,
                )
                out.close()
                children.append(Child(name, proc, log))
            self._wait_ready(port, children, lambda: stopping)
            if not stopping:
                self._announce(port, servers, logs)
            while not stopping:
                for child in children:
                    if child.proc.poll() is not None:
                        tail = child.log.read_text(errors="replace")[-1500:]
                        raise CommandError(
                            f"{child.name} stopped (exit {child.proc.returncode}); see {child.log}:\n{tail}"
                        )
                time.sleep(0.5)
            self.stdout.write("stopping…")
        finally:
            self._stop_all(children)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.stdout.write("all stopped")

    def _wait_ready(self, port: int, children: list[Child], stopping) -> None:
        deadline = time.monotonic() + 60
        while not stopping() and time.monotonic() < deadline:
            if _port_taken(port):
                return
            web = children[0]
            if web.proc.poll() is not None:
                raise CommandError(f"the web server did not start; see {web.log}")
            time.sleep(0.2)
        if not stopping():
            raise CommandError(
                f"the web server does not answer on port {port} after 60 s; see {children[0].log}"
            )

    def _announce(self, port: int, servers, logs: Path) -> None:
        login = (demo_dir() / "login.txt").read_text().splitlines()
        url = f"http://127.0.0.1:{port}/"
        self.stdout.write("")
        self.stdout.write(f"dmsupdate demo running: {url}")
        self.stdout.write(f"admin site: {url}admin/   API: {url}api/v1/docs/")
        for line in login:
            self.stdout.write(line)
        for server in servers:
            server.refresh_from_db()
            self.stdout.write(f"agent {server.name}: {server.agent_url}")
        self.stdout.write(f"logs: {logs}")
        self.stdout.write("Ctrl-C stops everything.")

    def _stop_all(self, children: list[Child]) -> None:
        """SIGTERM each group, wait for all, then SIGKILL whatever is left."""
        for child in children:
            if child.proc.poll() is None:
                try:
                    # The leader first: qcluster stops its own workers on SIGTERM.
                    child.proc.terminate()
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + STOP_TIMEOUT
        for child in children:
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for child in children:
            try:
                os.killpg(child.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if child.proc.poll() is None:
                child.proc.wait(5)
