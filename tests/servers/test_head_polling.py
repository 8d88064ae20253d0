"""`watch` with a control plane polls the dataset's head and lists S3 only when it moved (moto server, live control plane)."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model

from accounts.models import ApiToken, Role
from dmsupdate.agent.config import Config
from dmsupdate.agent.runner import Runner
from dmsupdate.agent.watch import Watcher
from dmsupdate.state.stores import REQUESTS
from publications import head
from publications.models import Dataset
from publications.sync import sync_dataset
from servers.models import Server
from tests.agent.conftest import StateRoot
from tests.api.fixtures import make_caller
from tests.conftest import free_port

TURTLE = b"@prefix ex: <http://example.org/> .\nex:a ex:b 1 .\n"


def lists() -> int:
    return REQUESTS[("s3", "list")]


@pytest.fixture
def fleet(live_server, s3_root, tmp_path, transactional_db):
    root, endpoint = s3_root
    dataset = Dataset.objects.create(name="flood", s3root=root, s3endpoint=endpoint)
    server = Server.objects.create(name="web1", dataset=dataset)
    user = get_user_model().objects.create(username="agent.web1")
    _, key = ApiToken.issue(user, Role.AGENT, server=server)
    StateRoot(root, endpoint).publish_image(0, [], tmp_path)
    sync_dataset(dataset)

    def agent(url: str = live_server.url, **extra) -> Watcher:
        config = Config.from_dict(
            {
                "s3root": root,
                "s3endpoint": endpoint,
                "dblocation": str(tmp_path / "db"),
                "dbname": "DB",
                "logArea": str(tmp_path / "log"),
                "controlplane": {"url": url, "server": "web1", "token": key, **extra},
            }
        )
        return Watcher(Runner(config), interval=60, sleep=lambda s: None)

    return agent


def publish(publisher) -> str:
    file = io.BytesIO(TURTLE)
    file.name = "a.ttl"
    answer = publisher.client.post(
        "/api/v1/publications/",
        {"dataset": "flood", "op": "add", "label": "readings", "graph": "http://example.org/g", "file": file},
        format="multipart",
    )
    assert answer.status_code == 201, answer.content
    return answer.json()["key"]


def test_an_idle_fleet_lists_nothing_between_publications(fleet):
    watcher = fleet()
    watcher.run_once()  # at start: a run (a full scan), which learns the dataset from the report's answer
    assert watcher.runner.dataset == "flood"
    watcher.run_once()  # the first poll has no ETag: the head "moved", one more run
    runs, before = watcher.runs, lists()
    for _ in range(20):
        watcher.run_once()
    assert lists() == before  # twenty idle rounds: not one ListObjectsV2
    assert watcher.runs == runs and watcher.poller.polls >= 21

    key = publish(make_caller("pia", Role.PUBLISHER))
    watcher.run_once()
    assert lists() > before and watcher.runs == runs + 1
    assert key in watcher.runner.status()["recent"]
    after = lists()
    watcher.run_once()
    assert lists() == after


def test_the_dataset_can_be_configured_and_a_silent_control_plane_means_listing(fleet):
    watcher = fleet(dataset="flood")
    watcher.run_once()
    watcher.run_once()
    assert watcher.runs == 1  # knew the dataset: the first poll's ETag was kept by the first run
    down = fleet(url=f"http://127.0.0.1:{free_port()}", dataset="flood")
    down.caught_up = True
    down.last_full_scan = 0.0
    down.clock = lambda: 1.0
    before = lists()
    down.run_once()
    assert down.runs == 1 and lists() > before  # no answer from the control plane: S3 is listed


def test_a_loaded_control_plane_is_obeyed(fleet, monkeypatch):
    watcher = fleet(dataset="flood")
    watcher.run_once()
    monkeypatch.setattr(head.GATE, "in_flight", 10**6)
    before, runs = lists(), watcher.runs
    wait = watcher.run_once()
    assert watcher.runs == runs and lists() == before
    assert wait >= 30  # the control plane's Retry-After
