"""The demo: a flood-monitoring style dataset on a local directory, replayed by three agents.

`build_demo` writes a base dump and a few days of updates (operations.sample)
under `var/demo/state` in stages, and after each stage runs a different
server's agent in-process, so the three servers end at different points of the
replay and the fleet shows real, differing lag. Used by `manage.py demo` (and
`make run`); `manage.py run_demo` then serves it.
"""

from __future__ import annotations

import json
import random
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import CommandError
from django.db import transaction

from accounts.models import ApiToken, Role
from audit.services import record
from dmsupdate.agent.config import Config
from dmsupdate.agent.runner import Runner
from operations.sample import Readings, StateWriter, make_stations, write_day, write_dump
from publications.models import Dataset
from publications.sync import sync_dataset
from servers.models import Server
from servers.services import record_report

DATASET = "flood-demo"
SERVERS = ("flood-a", "flood-b", "flood-c")


def demo_dir() -> Path:
    return Path(settings.VAR_DIR) / "demo"


def agent_config(name: str, root: str, token: str, agent_token: str, port: int) -> dict:
    """An agent's config.json: embedded Oxigraph store, reporting to the demo control plane."""
    folder = demo_dir() / "agents" / name
    return {
        "s3root": root,
        "dblocation": str(folder),
        "dbname": "oxigraph",
        "logArea": str(folder / "log"),
        "bindir": str(folder / "bin"),
        "agent_token": agent_token,
        "controlplane": {"url": f"http://127.0.0.1:{port}", "server": name, "token": token},
        # The demo shows servers at different lags until an admin presses Update: none catches up on its own.
        "update_on_start": False,
    }


def run_agent(config: dict) -> dict:
    """One `dms-update update` of an agent, in this process; returns its status.json."""
    # No report over HTTP here (the web server is not up yet): the caller records it.
    local = {k: v for k, v in config.items() if k != "controlplane"}
    Path(local["logArea"]).mkdir(parents=True, exist_ok=True)
    return Runner(Config.from_dict(local, source=f"demo agent {config['controlplane']['server']}")).update()


@dataclass
class DemoResult:
    """What `build_demo` made, printed by the command."""

    dataset: Dataset
    admin_password: str
    viewer_password: str
    keys: int
    servers: dict[str, dict] = field(default_factory=dict)


def reset_demo() -> None:
    """Remove the demo's files and rows so it can be built again from scratch."""
    with transaction.atomic():
        Server.objects.filter(dataset__name=DATASET).delete()
        Server.objects.filter(name__in=SERVERS).delete()
        Dataset.objects.filter(name=DATASET).delete()
    shutil.rmtree(demo_dir(), ignore_errors=True)


def saved_logins() -> dict[str, str]:
    """The passwords of the last demo (var/demo/login.txt), so a rebuilt demo keeps its logins."""
    try:
        text = (demo_dir() / "login.txt").read_text()
    except OSError:
        return {}
    found = {}
    for line in text.splitlines():
        _, _, credentials = line.partition(": ")
        user, sep, password = credentials.partition(" / ")
        if sep and user in ("admin", "viewer") and len(password.strip()) >= 12:
            found[user] = password.strip()
    return found


def build_demo(
    port: int = 8000, days: int = 3, stations: int = 40, say: Callable[[str], None] = print
) -> DemoResult:
    """Build the demo dataset, users, servers and agents (after removing any previous demo).

    The logins of a previous demo are kept (read back from its login.txt): each `make run`
    rebuilds the demo, and the admin's saved password keeps working.
    """
    logins = saved_logins()
    reset_demo()
    state = demo_dir() / "state"
    state.mkdir(parents=True)
    root = f"file://{state}"
    rng = random.Random(20160115)
    station_list = make_stations(rng, stations)
    readings = Readings(rng, station_list)
    today = datetime.now(UTC).date()
    first_day = today - timedelta(days=days)
    writer = StateWriter(root)

    admin, admin_password = _user("admin", logins.get("admin"), superuser=True)
    viewer, viewer_password = _user("viewer", logins.get("viewer"), group="viewer")
    for name in (Role.OPERATOR, Role.VIEWER, Role.PUBLISHER):
        Group.objects.get_or_create(name=name)
    dataset = Dataset.objects.create(
        name=DATASET,
        s3root=root,
        description="Sample flood-monitoring dataset built by `manage.py demo`: stations and daily readings.",
    )
    configs = {}
    for name in SERVERS:
        server = Server.objects.create(name=name, dataset=dataset, agent_token=secrets.token_urlsafe(24))
        _, key = ApiToken.issue(admin, Role.AGENT, name=f"agent {name}", server=server)
        configs[name] = agent_config(name, root, key, server.agent_token, port)
        folder = demo_dir() / "agents" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(configs[name], indent=2) + "\n")

    say(f"writing {root}: a base dump and {days} days of updates")
    write_dump(writer, station_list, readings, first_day)
    # Stage by stage: the last server stops after the first day, the middle one after the
    # second, the first replays everything; so the fleet shows three different lags.
    stops = {0: SERVERS[2], 1: SERVERS[1]}
    statuses: dict[str, dict] = {}
    for n in range(days):
        write_day(writer, station_list, readings, first_day + timedelta(days=n), n)
        if n in stops and n < days - 1:
            statuses[stops[n]] = _replay(stops[n], configs[stops[n]], say)
    for name in SERVERS:
        if name not in statuses:
            statuses[name] = _replay(name, configs[name], say)

    sync_dataset(dataset, full=True)
    for name, status in statuses.items():
        record_report(Server.objects.get(name=name), status)
    (demo_dir() / "login.txt").write_text(
        f"login: admin / {admin_password}\nviewer: viewer / {viewer_password}\n"
    )
    (demo_dir() / "demo.json").write_text(
        json.dumps({"port": port, "servers": list(SERVERS)}, indent=2) + "\n"
    )
    record("system", "demo.built", DATASET, {"keys": len(writer.keys), "servers": list(SERVERS)})
    return DemoResult(dataset, admin_password, viewer_password, len(writer.keys), statuses)


def _replay(name: str, config: dict, say: Callable[[str], None]) -> dict:
    status = run_agent(config)
    if not status.get("lastSucceeded"):
        raise CommandError(f"agent {name} failed at {status.get('failedKey')}: {status.get('error')}")
    say(f"{name}: replayed up to {status.get('effectiveDate')}")
    return status


def _user(username: str, password: str | None, superuser: bool = False, group: str | None = None):
    User = get_user_model()
    password = password or secrets.token_urlsafe(12)
    user, _ = User.objects.get_or_create(username=username)
    user.is_superuser = user.is_staff = superuser
    user.is_active = True
    user.set_password(password)
    user.save()
    if group:
        user.groups.set([Group.objects.get_or_create(name=group)[0]])
    return user, password
