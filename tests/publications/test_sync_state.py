"""sync_state: the registry follows the state root, incrementally, on S3 (moto server) and file://."""

from __future__ import annotations

import pytest

from dmsupdate.state.keys import NANOS, EffectiveTime, format_key
from publications import reconcile, registry_writer, sync
from publications.models import Dataset, ObjectKind, ObjectState, StateObject
from publications.sync import SyncError, sync_dataset
from tests.conftest import free_port
from tests.publications.state_roots import (
    GRAPH,
    T0,
    delete_objects,
    fail_batch_write,
    make_dataset,
    put_objects,
    update_key,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def big_s3_dataset(s3_root):
    """A dataset on the moto server holding one dump and 5,000 updates."""
    dump = format_key(EffectiveTime(T0 - NANOS), "flood", "dump")
    put_objects(s3_root, [dump] + [update_key(i) for i in range(5000)])
    return make_dataset(s3_root)


def test_sync_registers_all_5000_keys_then_lists_only_the_10_new_ones(big_s3_dataset, s3_root):
    first = sync_dataset(big_s3_dataset)

    assert first.new == 5001
    assert StateObject.objects.filter(dataset=big_s3_dataset).count() == 5001
    assert StateObject.objects.filter(dataset=big_s3_dataset, state=ObjectState.PUBLISHED).count() == 5001
    oldest = StateObject.objects.get(key=update_key(0))
    assert (oldest.kind, oldest.op, oldest.label) == (ObjectKind.UPDATE, "replace", "readings")
    assert oldest.arg == GRAPH.format(0)
    assert oldest.effective_ns == T0
    assert oldest.size == len(b"<a> <b> <c> .\n")
    assert len(oldest.etag) == 32
    assert oldest.first_seen == oldest.last_seen
    assert StateObject.objects.get(kind=ObjectKind.IMAGE).op == "dump"
    big_s3_dataset.refresh_from_db()
    assert big_s3_dataset.sync_cursor == update_key(4999)
    assert big_s3_dataset.last_sync_error == ""
    assert big_s3_dataset.last_sync_at is not None

    put_objects(s3_root, [update_key(5000 + i) for i in range(10)])
    second = sync_dataset(big_s3_dataset)

    assert second.list_calls <= 2
    assert (second.listed, second.new) == (10, 10)
    assert StateObject.objects.filter(dataset=big_s3_dataset).count() == 5011
    big_s3_dataset.refresh_from_db()
    assert big_s3_dataset.sync_cursor == update_key(5009)


def test_sync_with_nothing_new_registers_nothing(any_root):
    put_objects(any_root, [update_key(i) for i in range(3)])
    dataset = make_dataset(any_root)
    sync_dataset(dataset)

    again = sync_dataset(dataset)

    assert (again.listed, again.new) == (0, 0)
    assert StateObject.objects.count() == 3


def test_invalid_keys_are_recorded_invalid_with_the_parser_message(any_root):
    bad = [
        "updates/2016-01-15/04-00-01-262711077/cleanup_frobnicate_x.ttl",
        "updates/2016-13-45/04-00-01-1/readings_update.ru",
        "updates/notes.txt",
        "stray-file.bin",
    ]
    good = "updates/2016-01-15/02-03-07-185994019/readings_update.ru.gz"
    put_objects(any_root, bad + [good])
    dataset = make_dataset(any_root)

    result = sync_dataset(dataset, full=True)

    assert (result.new, result.invalid) == (5, 4)
    rows = {o.key: o for o in StateObject.objects.filter(dataset=dataset)}
    assert rows[good].state == ObjectState.PUBLISHED
    for key in bad:
        assert rows[key].state == ObjectState.INVALID
        assert rows[key].kind == ObjectKind.OTHER
        assert rows[key].effective_ns is None
    assert "unknown op 'frobnicate'" in rows[bad[0]].error
    assert "bad date/time" in rows[bad[1]].error
    assert "does not follow the state layout" in rows["updates/notes.txt"].error


def test_a_stray_key_after_the_dated_updates_does_not_hide_later_updates(any_root):
    put_objects(any_root, [update_key(0), "updates/zz-notes.txt"])
    dataset = make_dataset(any_root)
    sync_dataset(dataset)
    assert dataset.sync_cursor == update_key(0)

    put_objects(any_root, [update_key(1)])
    result = sync_dataset(dataset)

    assert result.new == 1
    assert StateObject.objects.get(key=update_key(1)).state == ObjectState.PUBLISHED


def test_incremental_sync_finds_a_new_image_below_the_update_cursor(any_root):
    put_objects(any_root, [format_key(EffectiveTime(T0), "flood", "dump"), update_key(5)])
    dataset = make_dataset(any_root)
    sync_dataset(dataset)
    image = format_key(EffectiveTime(T0 + 10 * NANOS), "flood", "image")
    put_objects(any_root, [image, "images/config.ttl"])

    result = sync_dataset(dataset)

    assert result.new == 2
    assert StateObject.objects.get(key=image).kind == ObjectKind.IMAGE
    assert StateObject.objects.get(key="images/config.ttl").kind == ObjectKind.EXTRA


def test_full_sync_marks_vanished_keys_missing_but_leaves_deleted_ones(any_root):
    keys = [update_key(i) for i in range(6)]
    put_objects(any_root, keys)
    dataset = make_dataset(any_root)
    sync_dataset(dataset)
    StateObject.objects.filter(key=keys[0]).update(state=ObjectState.DELETED)
    delete_objects(any_root, keys[:3])

    incremental = sync_dataset(dataset)
    assert incremental.missing == 0
    assert not StateObject.objects.filter(state=ObjectState.MISSING).exists()

    full = sync_dataset(dataset, full=True)

    assert full.missing == 2
    states = dict(StateObject.objects.values_list("key", "state"))
    assert states[keys[0]] == ObjectState.DELETED
    assert states[keys[1]] == states[keys[2]] == ObjectState.MISSING
    assert {states[k] for k in keys[3:]} == {ObjectState.PUBLISHED}
    dataset.refresh_from_db()
    assert dataset.last_full_sync_at is not None


def test_full_sync_brings_back_a_missing_key_that_reappears(any_root):
    keys = [update_key(i) for i in range(3)]
    put_objects(any_root, keys + ["junk.txt"])
    dataset = make_dataset(any_root)
    sync_dataset(dataset, full=True)
    delete_objects(any_root, [keys[1], "junk.txt"])
    sync_dataset(dataset, full=True)
    assert StateObject.objects.get(key=keys[1]).state == ObjectState.MISSING

    put_objects(any_root, [keys[1], "junk.txt"])
    result = sync_dataset(dataset, full=True)

    assert (result.restored, result.missing) == (2, 0)
    assert StateObject.objects.get(key=keys[1]).state == ObjectState.PUBLISHED
    assert StateObject.objects.get(key="junk.txt").state == ObjectState.INVALID


def test_full_sync_finds_a_late_arrival_written_below_the_cursor(any_root):
    put_objects(any_root, [update_key(10)])
    dataset = make_dataset(any_root)
    sync_dataset(dataset)
    put_objects(any_root, [update_key(3)])

    assert sync_dataset(dataset).new == 0
    assert sync_dataset(dataset, full=True).new == 1
    assert StateObject.objects.filter(key=update_key(3), state=ObjectState.PUBLISHED).exists()


def test_a_crash_mid_sync_never_moves_the_cursor_past_unwritten_keys(any_root, monkeypatch):
    monkeypatch.setattr(reconcile, "BATCH", 100)
    keys = [update_key(i) for i in range(250)]
    put_objects(any_root, keys)
    dataset = make_dataset(any_root)
    real_write = fail_batch_write(monkeypatch, 2, "worker killed")
    with pytest.raises(RuntimeError):
        sync_dataset(dataset)
    dataset.refresh_from_db()
    assert dataset.sync_cursor == keys[reconcile.BATCH - 1]
    assert StateObject.objects.count() == reconcile.BATCH

    monkeypatch.setattr(registry_writer, "write_batch", real_write)
    sync_dataset(dataset)

    assert StateObject.objects.count() == len(keys)


def test_missing_bucket_gives_a_clear_error_and_writes_nothing(moto_server):
    dataset = make_dataset(("s3://no-such-bucket-here/dms", moto_server))

    with pytest.raises(SyncError, match="bucket 'no-such-bucket-here' does not exist"):
        sync_dataset(dataset)

    dataset.refresh_from_db()
    assert "does not exist" in dataset.last_sync_error
    assert dataset.sync_cursor == ""
    assert dataset.last_sync_at is None
    assert not StateObject.objects.exists()


def test_unreachable_endpoint_gives_a_clear_error_and_writes_nothing():
    dataset = make_dataset(("s3://state/dms", f"http://127.0.0.1:{free_port()}"))

    with pytest.raises(SyncError, match="failed: Could not connect to the endpoint URL"):
        sync_dataset(dataset)

    dataset.refresh_from_db()
    assert "Could not connect" in dataset.last_sync_error
    assert not StateObject.objects.exists()


def test_a_state_root_that_is_neither_s3_nor_file_is_refused():
    dataset = Dataset.objects.create(name="odd", s3root="ftp://example.org/state")

    with pytest.raises(SyncError, match=r"state root must be s3://BUCKET/PREFIX or file:///PATH"):
        sync_dataset(dataset)

    dataset.refresh_from_db()
    assert dataset.last_sync_error.startswith("ftp://example.org/state: state root must be")


def test_a_successful_sync_clears_the_last_error(file_root):
    dataset = make_dataset(("file:///nonexistent/state", None))
    with pytest.raises(SyncError, match="is not a directory"):
        sync_dataset(dataset)
    dataset.s3root = file_root[0]
    dataset.save()

    sync_dataset(dataset)

    dataset.refresh_from_db()
    assert dataset.last_sync_error == ""


def test_moving_a_dataset_to_another_root_starts_its_sync_afresh(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    put_objects((f"file://{old}", None), [update_key(9)])
    put_objects((f"file://{new}", None), [update_key(1)])
    dataset = make_dataset((f"file://{old}", None))
    sync_dataset(dataset)

    dataset.s3root = f"file://{new}"
    dataset.save()
    result = sync_dataset(dataset)

    assert result.new == 1
    assert StateObject.objects.filter(key=update_key(1)).exists()


def test_a_second_sync_of_the_same_dataset_is_refused_while_one_runs(file_root):
    import psycopg
    from django.db import connection

    dataset = make_dataset(file_root)
    params = connection.get_connection_params()
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s, %s)", [sync.LOCK_NAMESPACE, dataset.pk])

        with pytest.raises(sync.SyncBusy, match="another sync of this dataset is running"):
            sync_dataset(dataset)

        other.execute("SELECT pg_advisory_unlock(%s, %s)", [sync.LOCK_NAMESPACE, dataset.pk])
        assert sync_dataset(dataset).new == 0
