"""The demo's sample data: gauging stations and their readings, written as a DMS publishes them.

A base dump, then for each day: readings added in batches (Turtle, gzipped
Turtle), a SPARQL update flagging suspect values, a cleanup drop of an old
readings graph, a stations replace and a postproc; every object goes into the
state root with an exclusive put. Used by operations.demo.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from dmsupdate.state.keys import EffectiveTime, format_key
from dmsupdate.state.stores import open_store

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
