"""Gaps a server cannot see by itself show on its status (API and dashboard) as a problem needing action.

- an update deleted from the bucket that the server still needs (the agent
  would list past it without a word; the registry's full reconcile marks it
  `missing`);
- a late arrival outside the replay window (the agent's full scan reports it
  in `late`, and never applies it silently).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from rest_framework.test import APIClient

from accounts.models import ApiToken, Role
from dmsupdate.agent.runner import Runner
from publications.models import Dataset, ObjectState, StateObject
from publications.sync import sync_dataset
from servers.models import Server
from tests.agent.conftest import StateRoot, at, quad, store_quads, ttl
from tests.reliability.conftest import agent_config

pytestmark = pytest.mark.django_db


@pytest.fixture
def state(file_root) -> StateRoot:
    return StateRoot(*file_root)


@pytest.fixture
def dataset(state) -> Dataset:
    return Dataset.objects.create(name="flood", s3root=state.root)


@pytest.fixture
def web1(dataset) -> Server:
    return Server.objects.create(name="web1", dataset=dataset)


@pytest.fixture
def web2(dataset) -> Server:
    return Server.objects.create(name="web2", dataset=dataset)


@pytest.fixture
def viewer_client(client):
    user = User.objects.create_user("victor", password="x" * 20)
    user.groups.add(Group.objects.get_or_create(name="viewer")[0])
    client.force_login(user)
    return client


def agent_client(server: Server) -> APIClient:
    user = User.objects.create_user(f"agent.{server.name}")
    _token, key = ApiToken.issue(user, Role.AGENT, server=server)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return api


def operator_api() -> APIClient:
    user = User.objects.create_user("olivia")
    _token, key = ApiToken.issue(user, Role.OPERATOR)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return api


def report(server: Server, status: dict) -> None:
    response = agent_client(server).post(f"/api/v1/servers/{server.name}/report/", status, format="json")
    assert response.status_code in (200, 201), response.content


def test_an_update_deleted_from_the_bucket_that_a_server_still_needs_makes_it_failing(
    state, dataset, web1, web2, viewer_client
):
    keys = [
        state.publish(i * 60, "add", ttl(f"ex:s{i} ex:p ex:o ."), arg="http://e/g", fmt="ttl")
        for i in range(1, 7)
    ]
    sync_dataset(dataset, full=True)
    report(web1, {"effectiveDate": at(2 * 60).path, "lastSucceeded": True})  # needs updates 3..6
    report(web2, {"effectiveDate": at(5 * 60).path, "lastSucceeded": True})  # past update 4 already
    gone = keys[3]
    os.remove(Path(state.root.removeprefix("file://")) / gone)

    sync_dataset(dataset, full=True)  # the daily full reconcile

    assert StateObject.objects.get(dataset=dataset, key=gone).state == ObjectState.MISSING
    api = operator_api()
    one = api.get("/api/v1/servers/web1/").json()
    assert one["state"] == "failing", one
    assert one["missing_updates"] == 1
    listed = {s["name"]: s for s in api.get("/api/v1/servers/").json()["results"]}
    assert listed["web1"]["state"] == "failing" and listed["web1"]["missing_updates"] == 1
    assert listed["web2"]["missing_updates"] == 0 and listed["web2"]["state"] != "failing"

    fleet = viewer_client.get("/").content.decode()
    row = fleet.split('id="server-web1"', 1)[1].split("</tr>", 1)[0]
    assert "state-failing" in fleet.split('id="server-web1"', 1)[0].rsplit("<tr", 1)[1] + row
    assert "1 update it still needs missing from the bucket" in row
    past = fleet.split('id="server-web2"', 1)[1].split("</tr>", 1)[0]
    assert "missing from the bucket" not in past and 'badge-bad">failing<' not in past
    page = viewer_client.get("/servers/web1/").content.decode()
    assert "missing from the bucket" in page and gone in page


def test_a_late_arrival_outside_the_window_is_reported_by_the_agent_and_shown_failing(
    state, dataset, web1, viewer_client, tmp_path
):
    state.publish_image(0, [quad("base", "p", "o")], tmp_path)
    state.publish(3600, "add", ttl("ex:a ex:p ex:o ."), arg="http://e/g", fmt="ttl")
    state.publish(72 * 3600, "add", ttl("ex:b ex:p ex:o ."), arg="http://e/g", fmt="ttl")
    config = agent_config(state.root, tmp_path / "agent")
    assert Runner(config).update()["lastSucceeded"] is True
    # Published now, but dated 48 h before what the server already applied: outside its 24 h window.
    late = state.publish(24 * 3600, "add", ttl("ex:late ex:p ex:o ."), arg="http://e/g", fmt="ttl")

    status = Runner(config).update(full_scan=True)

    assert status["late"] == [late]
    assert not any("late" in line for line in store_quads(config.db_dir)), "a late key was applied silently"
    report(web1, status)
    one = operator_api().get("/api/v1/servers/web1/").json()
    assert one["state"] == "failing" and one["late_keys"] == [late]
    fleet = viewer_client.get("/").content.decode()
    row = fleet.split('id="server-web1"', 1)[1].split("</tr>", 1)[0]
    assert "1 late key outside the window" in row
    page = viewer_client.get("/servers/web1/").content.decode()
    assert "late key older than the replay window" in page and late in page
