"""End to end: a publisher publishes through the API, the agent replays it and reports back."""

from __future__ import annotations

import gc
import gzip
import io
import time

import pyoxigraph
import pytest
import requests

from dmsupdate.agent.config import Config
from dmsupdate.agent.runner import Runner
from dmsupdate.state.keys import EffectiveTime, format_key
from servers.models import Server
from tests.api.fixtures import make_caller

G1 = "http://example.org/graph/readings"
G2 = "http://example.org/graph/stations"
EX = "http://example.org/"


def graph(db_dir, name: str) -> set[tuple[str, str, str]]:
    store = pyoxigraph.Store.read_only(str(db_dir))
    rows = {
        (q.subject.value, q.predicate.value, q.object.value)
        for q in store.quads_for_pattern(None, None, None, pyoxigraph.NamedNode(name))
    }
    del store
    gc.collect()
    return rows


@pytest.mark.django_db(transaction=True)
def test_agent_replays_what_the_publisher_published_and_the_api_shows_it_applied(
    live_server, publisher, dataset, tmp_path
):
    server = Server.objects.create(name="web1", dataset=dataset)
    agent = make_caller("agent.web1", "agent", server=server)
    api = f"{live_server.url}/api/v1/publications/"
    auth = {"Authorization": f"Token {publisher.key}"}

    def publish(
        query: str, body: bytes | None, content_type: str | None = None, files: dict | None = None
    ) -> dict:
        headers = dict(auth, **({"Content-Type": content_type} if content_type else {}))
        answer = requests.post(f"{api}?{query}", data=body, headers=headers, files=files, timeout=60)
        assert answer.status_code == 201, answer.text
        return answer.json()

    # The servers start from a dump (built elsewhere), put in S3 and recorded through the API.
    base = gzip.compress(f"<{EX}base> <{EX}p> <{EX}o> <{G2}> .\n".encode())
    dump_key = format_key(EffectiveTime(time.time_ns() - 3600 * 10**9), "dms", "dump")
    dataset.open_store().put_new(dump_key, io.BytesIO(base), len(base))
    recorded = requests.post(
        api, json={"dataset": "flood", "s3_url": f"{dataset.s3root}/{dump_key}"}, headers=auth, timeout=60
    )
    assert recorded.status_code == 201, recorded.text

    publish(
        f"dataset=flood&op=add&label=readings&graph={G1}",
        None,
        files={
            "file": (
                "r.ttl",
                b"@prefix ex: <http://example.org/> .\nex:s1 ex:level 3 .\nex:s2 ex:level 4 .\n",
            )
        },
    )
    publish(
        f"dataset=flood&op=replace&label=stations&graph={G2}",
        gzip.compress(f'<{EX}kew> <{EX}name> "Kew" .\n'.encode()),
        "application/n-triples",
    )
    publish(
        f"dataset=flood&op=add&label=stations&graph={G2}",
        f'<{EX}old> <{EX}name> "Old" .\n'.encode(),
        "application/n-triples",
    )
    publish(f"dataset=flood&op=drop&label=cleanup&graph={G2}", None)
    publish(
        f"dataset=flood&op=add&label=stations&graph={G2}",
        f'<{EX}ham> <{EX}name> "Ham" .\n'.encode(),
        "text/turtle",
    )
    last = publish(
        "dataset=flood&op=update&label=readings",
        f"DELETE WHERE {{ GRAPH <{G1}> {{ <{EX}s2> ?p ?o }} }}".encode(),
        "application/sparql-update",
    )

    config = Config.from_dict(
        {
            "s3root": dataset.s3root,
            "s3endpoint": dataset.s3endpoint,
            "dblocation": str(tmp_path / "db"),
            "dbname": "flood",
            "logArea": str(tmp_path / "log"),
            "bindir": str(tmp_path / "bin"),
            "controlplane": {"url": live_server.url, "server": "web1", "token": agent.key},
        }
    )
    status = Runner(config).update()

    assert status["lastSucceeded"] is True, status
    assert graph(config.db_dir, G1) == {(f"{EX}s1", f"{EX}level", "3")}
    assert graph(config.db_dir, G2) == {(f"{EX}ham", f"{EX}name", "Ham")}
    # The agent reported to the control plane, so the publication shows as applied on 1 of 1.
    server.refresh_from_db()
    assert server.effective_ns == last["effective_ns"]
    detail = requests.get(f"{api}{last['id']}/", headers=auth, timeout=30).json()
    assert (detail["applied_on"], detail["servers_total"]) == (1, 1)
    lag = requests.get(f"{live_server.url}/api/v1/servers/web1/", headers=auth, timeout=30).json()
    assert (lag["pending_updates"], lag["lag_seconds"], lag["state"]) == (0, 0.0, "ok")
