"""The demo: a flood-monitoring style dataset on a local directory, replayed by three agents.

`build_demo` writes a base dump and a few days of updates under
`var/demo/state` in stages, and after each stage runs a different server's
agent in-process, so the three servers end at different points of the replay
and the fleet shows real, differing lag. Used by `manage.py demo` (and
`make run`); `manage.py run_demo` then serves it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from accounts.models import ApiToken, Role
from audit.services import record
from dmsupdate.state.keys import EffectiveTime, format_key
from dmsupdate.state.stores import open_store
from publications.models import Dataset
from publications.sync import sync_dataset

DATASET = "flood-demo"
SERVERS = ("flood-a", "flood-b", "flood-c")
LABEL_DUMP = "demo"
BASE = "http://environment.data.gov.uk/flood-monitoring"
STATIONS_GRAPH = f"{BASE}/graph/stations"
LATEST_GRAPH = f"{BASE}/graph/latest"
PREFIXES = (
    f"@prefix core: <{BASE}/def/core/> .\n"
    "@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .\n"
    "@prefix geo: <http://www.w3.org/2003/01/geo/wgs84_pos#> .\n"
    "@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .\n\n"
)
SPARQL_PREFIXES = f"PREFIX core: <{BASE}/def/core/>\nPREFIX xsd: <http://www.w3.org/2001/XMLSchema#>\n"
RIVERS = ("Thames", "Severn", "Trent", "Wye", "Ouse", "Avon", "Tyne", "Exe", "Dee", "Tamar", "Kennet", "Lea")
TOWNS = (
    "Reading",
    "Shrewsbury",
    "Nottingham",
    "Hereford",
    "York",
    "Bath",
    "Hexham",
    "Exeter",
    "Chester",
    "Tavistock",
    "Newbury",
    "Hertford",
)


def demo_dir() -> Path:
    return Path(settings.VAR_DIR) / "demo"


@dataclass(frozen=True)
class Station:
    """A gauging station with one water-level measure."""

    reference: str
    river: str
    town: str
    lat: float
    long: float
    typical_level: float

    @property
    def uri(self) -> str:
        return f"{BASE}/id/stations/{self.reference}"

    @property
    def measure(self) -> str:
        return f"{BASE}/id/measures/{self.reference}-level-stage-i-15_min-mASD"


def make_stations(rng: random.Random, count: int) -> list[Station]:
    stations = []
    for i in range(count):
        reference = f"{rng.choice('EL')}{7000 + i * 37}" if i % 3 else f"{1000 + i}TH"
        stations.append(
            Station(
                reference=reference,
                river=f"River {RIVERS[i % len(RIVERS)]}",
                town=TOWNS[(i * 5) % len(TOWNS)],
                lat=round(50.5 + rng.random() * 4.5, 5),
                long=round(-3.5 + rng.random() * 4.0, 5),
                typical_level=round(0.4 + rng.random() * 3.0, 3),
            )
        )
    return stations


def station_triples(station: Station) -> list[tuple[str, str, str]]:
    """Triples in N-Triples term syntax: (subject, predicate, object)."""
    core = f"{BASE}/def/core/"
    s, m = f"<{station.uri}>", f"<{station.measure}>"
    return [
        (s, "<http://www.w3.org/1999/02/22-rdf-syntax-ns#type>", f"<{core}Station>"),
        (s, "<http://www.w3.org/2000/01/rdf-schema#label>", json.dumps(f"{station.town} ({station.river})")),
        (s, f"<{core}stationReference>", json.dumps(station.reference)),
        (s, f"<{core}riverName>", json.dumps(station.river)),
        (s, f"<{core}town>", json.dumps(station.town)),
        (s, "<http://www.w3.org/2003/01/geo/wgs84_pos#lat>", _decimal(station.lat)),
        (s, "<http://www.w3.org/2003/01/geo/wgs84_pos#long>", _decimal(station.long)),
        (s, f"<{core}measures>", m),
        (m, f"<{core}unitName>", '"mASD"'),
        (m, f"<{core}parameter>", '"level"'),
    ]


def _decimal(value: float) -> str:
    return f'"{value:.3f}"^^<http://www.w3.org/2001/XMLSchema#decimal>'


def reading_triples(station: Station, at: datetime, value: float) -> list[tuple[str, str, str]]:
    core = f"{BASE}/def/core/"
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    r = f"<{BASE}/data/readings/{station.reference}-level-stage-i-15_min-mASD/{stamp}>"
    return [
        (r, f"<{core}measure>", f"<{station.measure}>"),
        (r, f"<{core}dateTime>", f'"{stamp}"^^<http://www.w3.org/2001/XMLSchema#dateTime>'),
        (r, f"<{core}value>", _decimal(value)),
    ]


def readings_graph(day: date) -> str:
    """One named graph per day of readings; the dots of the URI are escaped in keys."""
    return f"{BASE}/graph/readings-{day.isoformat()}"


class Readings:
    """A random walk of water levels per station, hour by hour."""

    def __init__(self, rng: random.Random, stations: list[Station]) -> None:
        self.rng = rng
        self.levels = {s.reference: s.typical_level for s in stations}
        self.stations = stations

    def between(self, start: datetime, hours: int) -> list[tuple[str, str, str]]:
        triples = []
        for h in range(hours):
            at = start + timedelta(hours=h)
            for station in self.stations:
                level = max(0.05, self.levels[station.reference] + self.rng.gauss(0, 0.04))
                self.levels[station.reference] = level
                triples += reading_triples(station, at, level)
        return triples


def ntriples(triples: list[tuple[str, str, str]]) -> bytes:
    return "".join(f"{s} {p} {o} .\n" for s, p, o in triples).encode()


def nquads(graph: str, triples: list[tuple[str, str, str]]) -> bytes:
    return "".join(f"{s} {p} {o} <{graph}> .\n" for s, p, o in triples).encode()


def turtle(triples: list[tuple[str, str, str]]) -> bytes:
    # N-Triples lines are valid Turtle; the prefixes make the files look like the real feed.
    return PREFIXES.encode() + ntriples(triples)


LATEST_POSTPROC = (
    SPARQL_PREFIXES
    + f"DROP SILENT GRAPH <{LATEST_GRAPH}> ;\n"
    + f"INSERT {{ GRAPH <{LATEST_GRAPH}> {{ ?measure core:latestReading ?reading }} }}\n"
    + "WHERE {\n"
    + "  { SELECT ?measure (MAX(?t) AS ?latest) WHERE { GRAPH ?g { ?r core:measure ?measure ; core:dateTime ?t } }"
    + " GROUP BY ?measure }\n"
    + "  GRAPH ?g2 { ?reading core:measure ?measure ; core:dateTime ?latest }\n"
    + "}\n"
)


def suspect_flag_update(day: date) -> str:
    """A SPARQL update flagging implausible readings of a day (values above 4 m)."""
    graph = readings_graph(day)
    return (
        SPARQL_PREFIXES
        + f'INSERT {{ GRAPH <{graph}> {{ ?r core:qualityFlag "suspect" }} }}\n'
        + f"WHERE {{ GRAPH <{graph}> {{ ?r core:value ?v FILTER (?v > 4.0) }} }}\n"
    )


@dataclass
class StateWriter:
    """Writes objects into the demo state root with exclusive puts (never overwriting)."""

    root: str
    keys: list[str] = field(default_factory=list)

    def put(
        self,
        effective: EffectiveTime,
        label: str,
        op: str,
        body: bytes,
        arg: str | None = None,
        fmt: str | None = None,
    ) -> str:
        """Write one object; `.gz` formats are compressed here (a dump arrives compressed)."""
        key = format_key(effective, label, op, arg, fmt)
        if fmt and fmt.endswith(".gz") and op != "dump":
            body = gzip.compress(body, mtime=0)
        store = open_store(self.root)
        store.put_new(key, io.BytesIO(body), len(body), hashlib.md5(body).hexdigest())
        self.keys.append(key)
        return key


def at(day: date, hour: int, minute: int = 0, nanos: int = 0) -> EffectiveTime:
    """An effective time on a day, with a sub-second part as real publishers produce."""
    base = EffectiveTime.from_datetime(datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC))
    return EffectiveTime(base.nanos + nanos)


def write_dump(writer: StateWriter, stations: list[Station], readings: Readings, day: date) -> str:
    """The base dump: stations plus the previous day's readings, as gzipped N-Quads."""
    yesterday = day - timedelta(days=1)
    start = datetime(yesterday.year, yesterday.month, yesterday.day, tzinfo=UTC)
    body = nquads(STATIONS_GRAPH, [t for s in stations for t in station_triples(s)])
    body += nquads(readings_graph(yesterday), readings.between(start, 24))
    return writer.put(at(day, 0, 0, 0), LABEL_DUMP, "dump", gzip.compress(body, mtime=0), fmt="nq.gz")


def write_day(writer: StateWriter, stations: list[Station], readings: Readings, day: date, n: int) -> None:
    """One day of updates: readings in three batches, a cleanup, a correction and a postproc."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    graph = readings_graph(day)
    writer.put(at(day, 1, 0, 5), "cleanup", "drop", b"", arg=readings_graph(day - timedelta(days=2)))
    writer.put(at(day, 6, 0, 262711077), "readings", "add", turtle(readings.between(start, 6)), graph, "ttl")
    writer.put(
        at(day, 12, 0, 185994019),
        "readings",
        "add",
        turtle(readings.between(start + timedelta(hours=6), 6)),
        graph,
        "ttl.gz",
    )
    writer.put(at(day, 12, 30, 40), "readings", "update", suspect_flag_update(day).encode(), fmt="ru.gz")
    if n == 1:
        # A station moved to a new reference: the whole stations graph is replaced.
        moved = stations[:-1] + [Station("E9999", "River Kennet", "Newbury", 51.4012, -1.3231, 1.2)]
        body = ntriples([t for s in moved for t in station_triples(s)])
        writer.put(at(day, 15, 30, 364044013), "stations", "replace", body, STATIONS_GRAPH, "nt")
    writer.put(
        at(day, 18, 0, 5),
        "readings",
        "add",
        turtle(readings.between(start + timedelta(hours=12), 6)),
        graph,
        "ttl",
    )
    writer.put(at(day, 23, 30, 0), "derive", "postproc", LATEST_POSTPROC.encode(), "latest-readings", "ru")


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
    }


def run_agent(config: dict) -> dict:
    """One `dms-update update` of an agent, in this process; returns its status.json."""
    from dmsupdate.agent.config import Config
    from dmsupdate.agent.runner import Runner

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
    from servers.models import Server

    with transaction.atomic():
        Server.objects.filter(dataset__name=DATASET).delete()
        Server.objects.filter(name__in=SERVERS).delete()
        Dataset.objects.filter(name=DATASET).delete()
    shutil.rmtree(demo_dir(), ignore_errors=True)


def build_demo(
    port: int = 8000, days: int = 3, stations: int = 40, say: Callable[[str], None] = print
) -> DemoResult:
    """Build the demo dataset, users, servers and agents (after removing any previous demo)."""
    from servers.models import Server
    from servers.services import record_report

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

    admin, admin_password = _user("admin", superuser=True)
    viewer, viewer_password = _user("viewer", group="viewer")
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
    from django.core.management.base import CommandError

    status = run_agent(config)
    if not status.get("lastSucceeded"):
        raise CommandError(f"agent {name} failed at {status.get('failedKey')}: {status.get('error')}")
    say(f"{name}: replayed up to {status.get('effectiveDate')}")
    return status


def _user(username: str, superuser: bool = False, group: str | None = None):
    User = get_user_model()
    password = secrets.token_urlsafe(12)
    user, _ = User.objects.get_or_create(username=username)
    user.is_superuser = user.is_staff = superuser
    user.is_active = True
    user.set_password(password)
    user.save()
    if group:
        user.groups.set([Group.objects.get_or_create(name=group)[0]])
    return user, password
