"""Symbolic links planted in a `file://` state root lead nowhere outside it, for the agent or the publication API."""

from __future__ import annotations

import io
import os

import pytest

from dmsupdate.agent.runner import Runner
from dmsupdate.state.keys import format_key
from dmsupdate.state.stores import ObjectNotFound, StoreError, open_store
from publications.models import Dataset
from tests.agent.conftest import at, quad, store_quads, ttl

G = "http://example.org/graph/g"
SECRET = "<http://example.org/secret> <http://example.org/p> <http://example.org/o> .\n"


@pytest.fixture
def outside(tmp_path):
    """A folder beside the root, with a file an attacker wants read (or overwritten)."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.nt").write_text(SECRET)
    return folder


def test_agent_refuses_to_read_a_key_that_is_a_link_out_of_the_root(file_state, make_config, outside):
    file_state.publish_dump(0, [quad("s", "p", "o", G)])
    key = format_key(at(10), "test", "add", G, "nt")
    link = file_state.store.base / key
    link.parent.mkdir(parents=True)
    os.symlink(outside / "secret.nt", link)
    config = make_config(file_state)
    status = Runner(config).update()
    assert status["failedKey"] == key and "symbolic link" in status["error"]
    assert not any("secret" in q for q in store_quads(config.db_dir))


def test_agent_never_walks_a_folder_that_is_a_link_out_of_the_root(file_state, make_config, outside):
    file_state.publish_dump(0, [quad("s", "p", "o", G)])
    day = outside / "day"
    (day / at(10).time).mkdir(parents=True)
    (day / at(10).time / f"test_add_{G.replace('/', '%2F').replace('.', '%2E')}.nt").write_text(SECRET)
    (file_state.store.base / "updates").mkdir()
    os.symlink(day, file_state.store.base / "updates" / at(10).date)
    config = make_config(file_state)
    status = Runner(config).update()
    assert status["lastSucceeded"] is True and status["applied"] == 1  # the dump only
    # Listed as what it is, a link (never a folder to descend into): not a key.
    assert [i.key for i in file_state.store.list("updates/")] == [f"updates/{at(10).date}"]
    assert not any("secret" in q for q in store_quads(config.db_dir))


def test_store_reads_refuse_links_and_special_files(file_root, outside):
    store = open_store(*file_root)
    base = store.base
    (base / "images").mkdir()
    os.symlink(outside / "secret.nt", base / "images" / "config.ttl")
    os.mkfifo(base / "images" / "x.opt")
    for key in ("images/config.ttl", "images/x.opt"):
        with pytest.raises(StoreError, match="symbolic link|not a regular file"):
            store.open(key).read()
    with pytest.raises(StoreError, match="symbolic link"):
        store.head("images/config.ttl")
    with pytest.raises(ObjectNotFound):
        store.open("images/none.opt")


@pytest.mark.django_db
def test_publication_api_never_writes_through_a_link_out_of_the_root(publisher, file_root, outside):
    root, _ = file_root
    Dataset.objects.create(name="flood", s3root=root)
    base = open_store(root, None).base
    os.symlink(outside, base / "updates")
    response = publisher.client.generic(
        "POST",
        f"/api/v1/publications/?dataset=flood&op=add&label=x&graph={G}",
        ttl("ex:a ex:b ex:c ."),
        content_type="text/turtle",
    )
    assert response.status_code == 502, response.content
    assert response.json()["error"] == "store_error" and "symbolic link" in response.json()["detail"]
    assert sorted(p.name for p in outside.rglob("*")) == ["secret.nt"]


def test_backup_writes_never_follow_a_link_planted_at_the_key(file_root, outside):
    store = open_store(*file_root)
    (store.base / "backups").mkdir()
    os.symlink(outside / "secret.nt", store.base / "backups" / "registry.jsonl.gz")
    store.put("backups/registry.jsonl.gz", io.BytesIO(b"new"), 3)
    assert (outside / "secret.nt").read_text() == SECRET  # the link was replaced, not followed
    assert store.open("backups/registry.jsonl.gz").read() == b"new"
    with pytest.raises(StoreError):
        os.symlink(outside / "secret.nt", store.base / "backups" / "other")
        store.put_new("backups/other", io.BytesIO(b"x"), 1)
    assert (outside / "secret.nt").read_text() == SECRET
    store.delete_many(["backups/other"])
    assert (outside / "secret.nt").exists()
