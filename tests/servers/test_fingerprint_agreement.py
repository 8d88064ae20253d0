"""Replica agreement (DESIGN §6): three agents replay one root, a hand edit makes one `diverged`, a rebuild fixes it."""

from __future__ import annotations

import gc

import pyoxigraph as ox
import pytest
import requests
from rest_framework.test import APIClient

from accounts.models import ApiToken, Role
from dmsupdate.agent.config import Config
from dmsupdate.agent.runner import Runner
from publications.images import build_image
from publications.models import Dataset, ObjectKind, StateObject
from servers.lag import lag_for
from servers.models import Agreement, Server, ServerState
from servers.services import record_report
from tests.agent.conftest import StateRoot, quad, ttl
from tests.agent.test_replay_sparql import endpoint_config

pytestmark = pytest.mark.django_db

G1 = "http://example.org/graph/one"
G2 = "http://example.org/graph/two"


def publish(state: StateRoot) -> None:
    state.publish_dump(0, [quad("s0", "p", "o0", G1), quad("s0", "p", "o0", G2)])
    state.publish(10, "add", ttl("ex:s1 ex:p ex:o1 .", 'ex:s1 ex:q "Kew"@EN .'), arg=G1, fmt="ttl")
    state.publish(20, "replace", ttl("ex:s2 ex:p ex:o2 .", "ex:s2 ex:p [ ex:q ex:o3 ] ."), arg=G2, fmt="ttl")
    state.publish(
        30,
        "update",
        f"INSERT DATA {{ GRAPH <{G1}> {{ <http://example.org/s3> <http://example.org/p> 3 }} }}",
        fmt="ru",
    )


def make_config(state: StateRoot, **extra) -> Config:
    return Config.from_dict({"s3root": state.root, "dbname": "store", "lock_timeout": 0.5, **extra})


@pytest.fixture
def fleet(file_root, oxigraph_server, tmp_path):
    """Three servers of one dataset: two embedded stores and an Oxigraph server, with their agent configs."""
    state = StateRoot(*file_root)
    publish(state)
    dataset = Dataset.objects.create(name="flood", s3root=state.root)
    configs = {
        "emb-a": make_config(state, dblocation=str(tmp_path / "a"), logArea=str(tmp_path / "a-log")),
        "emb-b": make_config(state, dblocation=str(tmp_path / "b"), logArea=str(tmp_path / "b-log")),
        "oxi": endpoint_config(
            make_config,
            state,
            oxigraph_server,
            logArea=str(tmp_path / "oxi-log"),
            dblocation=str(tmp_path / "oxi"),
            bindir=str(tmp_path / "bin"),
        ),
    }
    servers = {name: Server.objects.create(name=name, dataset=dataset) for name in configs}
    return dataset, servers, configs, oxigraph_server


def run(fleet, name: str, kind: str = "update") -> dict:
    _, servers, configs, _ = fleet
    runner = Runner(configs[name])
    status = getattr(runner, kind)()
    record_report(servers[name], status)
    return status


def state_of(name: str) -> str:
    return lag_for(Server.objects.get(name=name)).state


def test_three_agents_agree_then_a_hand_edit_diverges_one_and_a_rebuild_fixes_it(fleet):
    dataset, servers, configs, _ = fleet
    for name in servers:
        assert run(fleet, name)["lastSucceeded"] is True
    agreement = Agreement.objects.get(dataset=dataset)
    assert (agreement.agreeing, agreement.compared) == (3, 3)
    assert all(state_of(name) == ServerState.OK for name in servers)

    store = ox.Store(str(configs["emb-b"].db_dir))
    store.remove(quad("s1", "p", "o1", G1))
    del store
    gc.collect()
    run(fleet, "emb-b", "verify")

    assert state_of("emb-b") == ServerState.DIVERGED
    assert state_of("emb-a") == state_of("oxi") == ServerState.OK
    divergence = Server.objects.get(name="emb-b").divergence
    assert divergence["reference"] == "majority"
    (graph,) = divergence["graphs"]
    assert (graph["graph"], graph["triples"], graph["expected_triples"]) == (G1, 3, 4)
    assert (
        Agreement.objects.get(dataset=dataset).agreeing,
        Agreement.objects.get(dataset=dataset).compared,
    ) == (2, 3)

    run(fleet, "emb-b", "rebuild")
    assert state_of("emb-b") == ServerState.OK
    assert Agreement.objects.get(dataset=dataset).agreeing == 3


def test_a_triple_deleted_on_the_oxigraph_server_shows_at_its_next_run(fleet):
    dataset, servers, _, base = fleet
    for name in servers:
        run(fleet, name)
    requests.post(
        f"{base}/update",
        data=f"DELETE DATA {{ GRAPH <{G2}> {{ <http://example.org/s2> <http://example.org/p> <http://example.org/o2> }} }}",
        headers={"Content-Type": "application/sparql-update"},
        timeout=10,
    ).raise_for_status()
    run(fleet, "oxi")

    assert state_of("oxi") == ServerState.DIVERGED
    assert [g["graph"] for g in Server.objects.get(name="oxi").divergence["graphs"]] == [G2]
    run(fleet, "oxi", "rebuild")
    assert state_of("oxi") == ServerState.OK


def test_a_server_is_compared_with_the_image_built_for_its_time(fleet):
    dataset, servers, configs, _ = fleet
    from publications.sync import sync_dataset

    sync_dataset(dataset, full=True)
    result = build_image(dataset)
    image = StateObject.objects.get(dataset=dataset, key=result["image"], kind=ObjectKind.IMAGE)
    assert image.fingerprint["mode"] == "full"
    assert image.fingerprint["total"] == result["fingerprint"]

    status = run(fleet, "emb-a", "update")
    assert status["effectiveDate"] == result["effective"]
    agreement = Agreement.objects.get(dataset=dataset)
    assert agreement.with_image and (agreement.agreeing, agreement.compared) == (1, 1)

    store = ox.Store(str(configs["emb-a"].db_dir))
    store.remove(quad("s0", "p", "o0", G1))
    del store
    gc.collect()
    run(fleet, "emb-a", "verify")
    divergence = Server.objects.get(name="emb-a").divergence
    assert divergence["reference"] == "image"
    assert [g["graph"] for g in divergence["graphs"]] == [G1]


def test_the_api_and_metrics_show_a_diverged_server_and_its_graphs(fleet, client):
    dataset, servers, configs, _ = fleet
    for name in servers:
        run(fleet, name)
    store = ox.Store(str(configs["emb-a"].db_dir))
    store.remove(quad("s1", "p", "o1", G1))
    del store
    gc.collect()
    run(fleet, "emb-a", "verify")

    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("vera")
    _, key = ApiToken.issue(user, Role.VIEWER, name="v")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    body = api.get("/api/v1/servers/emb-a/").json()
    assert body["state"] == "diverged"
    assert body["fingerprint"]["mode"] == "full" and len(body["fingerprint"]["hash"]) == 64
    assert body["divergence"]["graphs"][0]["graph"] == G1
    assert body["divergence"]["graphs"][0]["expected_triples"] == 4
    listed = {s["name"]: s for s in api.get("/api/v1/servers/").json()["results"]}
    assert listed["emb-b"]["divergence"] is None and listed["emb-b"]["fingerprint"]["mode"] == "counts"

    text = client.get("/metrics").content.decode()
    assert 'dmsupdate_server_diverged_graphs{dataset="flood",server="emb-a"} 1.0' in text
    assert 'dmsupdate_server_state{dataset="flood",server="emb-a",state="diverged"} 1.0' in text
    assert 'dmsupdate_dataset_servers_agreeing{dataset="flood"} 2.0' in text
