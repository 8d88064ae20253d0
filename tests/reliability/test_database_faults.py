"""PostgreSQL going away during a publication: a 503 JSON answer, nothing half-published, a retry that works.

The shared PostgreSQL server is never stopped: the request's own backend is
killed with `pg_terminate_backend`, the way a server restart or a failover
looks to the application.
"""

from __future__ import annotations

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from accounts.models import Role
from dmsupdate.agent.runner import Runner
from publications.models import Dataset, ObjectState, PublicationEvent, StateObject
from publications.sync import sync_dataset
from servers.lag import lag_for
from servers.models import Server
from tests.agent.conftest import StateRoot
from tests.api.fixtures import make_caller
from tests.reliability.conftest import COUNTER, agent_config, bump_counter, publish_small_history

pytestmark = pytest.mark.django_db(transaction=True)


def terminate_own_backend() -> None:
    """Kill this process's PostgreSQL backend from another connection (no other session is touched)."""
    pid = connection.connection.info.backend_pid
    db = settings.DATABASES["default"]
    with psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname=db["NAME"],
        autocommit=True,
    ) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])


def reconnect() -> None:
    connection.close()
    connection.ensure_connection()


@pytest.fixture
def flood(file_root) -> tuple[Dataset, StateRoot]:
    state = StateRoot(*file_root)
    publish_small_history(state)
    dataset = Dataset.objects.create(name="flood", s3root=state.root)
    sync_dataset(dataset, full=True)
    return dataset, state


def publish_counter(client, step: int, key: str = "pub-1"):
    return client.generic(
        "POST",
        "/api/v1/publications/?dataset=flood&op=update&label=readings",
        bump_counter(step),
        content_type="application/sparql-update",
        HTTP_IDEMPOTENCY_KEY=key,
    )


def update_keys(state: StateRoot) -> set[str]:
    return {info.key for info in state.store.list("updates/")}


def counter_after_replay(state: StateRoot, home) -> str:
    config = agent_config(state.root, home)
    status = Runner(config).update()
    assert status["lastSucceeded"] is True, status
    import pyoxigraph as ox

    store = ox.Store.read_only(str(config.db_dir))
    try:
        (value,) = [q.object.value for q in store.quads_for_pattern(ox.NamedNode(COUNTER), None, None)]
    finally:
        del store
    return value


def test_database_gone_before_the_publication_gives_503_and_writes_nothing(flood):
    dataset, state = flood
    publisher = make_caller("petra", Role.PUBLISHER)
    before = update_keys(state)
    rows = StateObject.objects.count()

    terminate_own_backend()
    answer = publish_counter(publisher.client, 1000)

    assert answer.status_code == 503, answer.content
    assert answer.json()["error"] == "database_unavailable"
    assert answer["Retry-After"] == "5"
    assert update_keys(state) == before
    reconnect()
    assert StateObject.objects.count() == rows and not PublicationEvent.objects.exists()

    again = publish_counter(publisher.client, 1000)
    assert again.status_code == 201, again.content
    assert update_keys(state) == before | {again.json()["key"]}


def test_database_gone_after_the_upload_withdraws_it_and_the_retry_publishes_once(
    flood, monkeypatch, tmp_path
):
    dataset, state = flood
    publisher = make_caller("petra", Role.PUBLISHER)
    web1 = Server.objects.create(name="web1", dataset=dataset)
    before = update_keys(state)
    real_open_store = Dataset.open_store

    def store_that_loses_the_database(self):
        store = real_open_store(self)
        real_put_new = store.put_new

        def put_new(*args, **kwargs):
            info = real_put_new(*args, **kwargs)
            terminate_own_backend()  # uploaded, not yet marked published
            return info

        store.put_new = put_new
        return store

    monkeypatch.setattr(Dataset, "open_store", store_that_loses_the_database)
    answer = publish_counter(publisher.client, 1000)

    assert answer.status_code == 503, answer.content
    assert answer.json()["error"] == "database_unavailable"
    assert update_keys(state) == before, "an update the publisher was told failed is still in the bucket"
    monkeypatch.setattr(Dataset, "open_store", real_open_store)
    reconnect()
    assert not PublicationEvent.objects.exists()

    again = publish_counter(publisher.client, 1000)  # the same Idempotency-Key
    assert again.status_code == 201, again.content
    assert update_keys(state) == before | {again.json()["key"]}
    assert PublicationEvent.objects.count() == 1
    # The withdrawn attempt's row is never a gap a server would need.
    sync_dataset(dataset, full=True)
    assert not StateObject.objects.filter(dataset=dataset, state=ObjectState.MISSING).exists()
    assert lag_for(web1).missing_updates == 0
    # The history's own counter updates add 4+8+12+300+1100 = 1424; the publication 1000, once.
    assert counter_after_replay(state, tmp_path / "agent") == str(1424 + 1000)
