"""Fixtures of the trigger tests: scripted agents started on demand, a dataset on a directory, an operator."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from publications.models import Dataset
from tests.servers.scripted_agents import ScriptedAgent


@pytest.fixture
def agents():
    """Start scripted agents on demand; all are stopped after the test."""
    started: list[ScriptedAgent] = []
    ScriptedAgent.concurrent = ScriptedAgent.max_concurrent = 0

    def make(**kw) -> ScriptedAgent:
        agent = ScriptedAgent(**kw)
        started.append(agent)
        return agent

    yield make
    for agent in started:
        agent.close()


@pytest.fixture
def file_dataset(file_root):
    return Dataset.objects.create(name="flood", s3root=file_root[0])


@pytest.fixture
def operator_user():
    return get_user_model().objects.create_user("olivia", password="x")
