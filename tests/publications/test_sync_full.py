"""Full sync_state runs: keys judged in byte order, vanished runs of keys, and the writer on its own connection."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from publications import reconcile, registry_writer, sync
from publications.models import Dataset, ObjectKind, ObjectState, StateObject
from publications.sync import sync_dataset
from tests.publications.state_roots import (
    delete_objects,
    fail_batch_write,
    make_dataset,
    put_objects,
    update_key,
)

pytestmark = pytest.mark.django_db


BYTE_ORDER_KEYS = sorted(
    [
        "A-z.txt",
        "Zeta.txt",
        "_under.txt",
        "a-b.txt",
        "a_b.txt",
        "ab.txt",
        "alpha.txt",
        "z.txt",
        "é.txt",
        "ä.txt",
        "日本.txt",
        "updates/notes-B.txt",
        "updates/notes-a.txt",
        "updates/notes_a.txt",
    ],
    key=lambda k: k.encode(),
)


def test_the_registry_orders_keys_as_s3_lists_them():
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("SQLite compares keys byte by byte already")
    with connection.cursor() as cur:
        cur.execute(
            "SELECT collation_name FROM information_schema.columns"
            " WHERE table_name = 'publications_stateobject' AND column_name = 'key'"
        )
        assert cur.fetchone() == ("C",)
    dataset = Dataset.objects.create(name="order", s3root="file:///nowhere")
    now = timezone.now()
    for key in BYTE_ORDER_KEYS[::-1]:
        StateObject.objects.create(
            dataset=dataset, key=key, kind=ObjectKind.OTHER, first_seen=now, last_seen=now
        )
    assert list(StateObject.objects.filter(dataset=dataset).values_list("key", flat=True)) == BYTE_ORDER_KEYS


def test_full_sync_in_small_batches_judges_keys_in_byte_order(any_root, monkeypatch):
    monkeypatch.setattr(reconcile, "BATCH", 2)
    monkeypatch.setattr(reconcile, "PAGE", 3)
    put_objects(any_root, BYTE_ORDER_KEYS)
    dataset = make_dataset(any_root)
    assert sync_dataset(dataset, full=True).new == len(BYTE_ORDER_KEYS)
    gone = ["_under.txt", "a_b.txt", "ä.txt", "updates/notes-a.txt"]
    delete_objects(any_root, gone)

    result = sync_dataset(dataset, full=True)

    assert (result.new, result.missing, result.restored) == (0, len(gone), 0)
    states = dict(StateObject.objects.filter(dataset=dataset).values_list("key", "state"))
    assert len(states) == len(BYTE_ORDER_KEYS)
    assert {k for k, s in states.items() if s == ObjectState.MISSING} == set(gone)

    put_objects(any_root, gone)
    back = sync_dataset(dataset, full=True)

    assert (back.new, back.missing, back.restored) == (0, 0, len(gone))
    assert set(StateObject.objects.values_list("state", flat=True)) == {ObjectState.INVALID}


def test_full_sync_marks_long_runs_of_vanished_keys_between_and_after_batches(file_root, monkeypatch):
    monkeypatch.setattr(reconcile, "BATCH", 3)
    monkeypatch.setattr(reconcile, "PAGE", 4)
    keys = [update_key(i) for i in range(30)]
    put_objects(file_root, keys)
    dataset = make_dataset(file_root)
    sync_dataset(dataset)
    gone = keys[4:15] + keys[17:18] + keys[22:]
    delete_objects(file_root, gone)

    result = sync_dataset(dataset, full=True)

    assert (result.listed, result.missing) == (len(keys) - len(gone), len(gone))
    missing = set(StateObject.objects.filter(state=ObjectState.MISSING).values_list("key", flat=True))
    assert missing == set(gone)


def test_full_sync_of_an_emptied_root_marks_every_key_missing(file_root):
    keys = [update_key(i) for i in range(5)]
    put_objects(file_root, keys)
    dataset = make_dataset(file_root)
    sync_dataset(dataset)
    delete_objects(file_root, keys)

    result = sync_dataset(dataset, full=True)

    assert (result.listed, result.missing) == (0, 5)


def test_full_sync_leaves_rows_registered_after_it_started(file_root):
    put_objects(file_root, [update_key(1)])
    dataset = make_dataset(file_root)
    later = timezone.now() + timedelta(minutes=5)
    # A publication that registered its key while the listing was past it.
    StateObject.objects.create(
        dataset=dataset,
        key=update_key(0),
        kind=ObjectKind.UPDATE,
        state=ObjectState.UNPUBLISHED,
        first_seen=later,
        last_seen=later,
    )

    result = sync_dataset(dataset, full=True)

    assert (result.new, result.missing) == (1, 0)
    assert StateObject.objects.get(key=update_key(0)).state == ObjectState.UNPUBLISHED


def test_full_sync_rewrites_no_unchanged_row_and_shows_keys_seen_by_it(file_root):
    from publications.api.serializers import StateObjectSerializer

    keys = [update_key(i) for i in range(3)]
    put_objects(file_root, keys)
    dataset = make_dataset(file_root)
    sync_dataset(dataset, full=True)
    registered = dict(StateObject.objects.values_list("key", "last_seen"))
    first_full = Dataset.objects.get(pk=dataset.pk).last_full_sync_at
    delete_objects(file_root, keys[:1])

    sync_dataset(dataset, full=True)

    dataset.refresh_from_db()
    rows = {o.key: o for o in StateObject.objects.select_related("dataset")}
    assert {k: o.last_seen for k, o in rows.items() if k != keys[0]} == {k: registered[k] for k in keys[1:]}
    assert rows[keys[1]].seen_at == dataset.last_full_sync_at
    assert StateObjectSerializer(rows[keys[1]]).data[
        "last_seen"
    ] == dataset.last_full_sync_at.isoformat().replace("+00:00", "Z")
    # The vanished key was last seen by the full sync before.
    assert rows[keys[0]].state == ObjectState.MISSING
    assert rows[keys[0]].seen_at == rows[keys[0]].last_seen == first_full


def test_full_sync_records_another_size_and_etag_under_the_same_key(s3_root):
    keys = [update_key(i) for i in range(3)]
    put_objects(s3_root, keys)
    dataset = make_dataset(s3_root)
    sync_dataset(dataset)
    before = StateObject.objects.get(key=keys[1])
    put_objects(s3_root, [keys[1]], body=b"<a> <b> <d> .\n<a> <b> <e> .\n")

    result = sync_dataset(dataset, full=True)

    after = StateObject.objects.get(key=keys[1])
    assert (result.changed, result.new, result.missing) == (1, 0, 0)
    assert after.size == len(b"<a> <b> <d> .\n<a> <b> <e> .\n")
    assert after.etag != before.etag


@pytest.mark.django_db(transaction=True)
def test_a_sync_writing_on_its_own_connection_registers_every_key_and_reports_progress(file_root):
    keys = [update_key(i) for i in range(2500)]
    put_objects(file_root, keys + ["junk.txt"])
    dataset = make_dataset(file_root)
    seen = []

    first = sync_dataset(dataset, on_batch=lambda r: seen.append(r.listed))
    delete_objects(file_root, keys[1000:1010])
    full = sync_dataset(dataset, full=True)

    assert (first.new, first.invalid) == (2500, 0)
    assert seen == [1000, 2000, 2500]
    # junk.txt is outside images/ and updates/: only full runs see it.
    assert (full.listed, full.new, full.invalid, full.missing) == (2491, 1, 1, 10)
    assert StateObject.objects.filter(dataset=dataset).count() == 2501
    assert Dataset.objects.get(pk=dataset.pk).sync_cursor == keys[-1]


@pytest.mark.django_db(transaction=True)
def test_a_write_error_on_the_writer_connection_stops_the_sync_before_the_cursor_passes_it(
    file_root, monkeypatch
):
    monkeypatch.setattr(reconcile, "BATCH", 100)
    keys = [update_key(i) for i in range(450)]
    put_objects(file_root, keys)
    dataset = make_dataset(file_root)
    real_write = fail_batch_write(monkeypatch, 3, "database went away")
    with pytest.raises(RuntimeError, match="database went away"):
        sync_dataset(dataset)

    assert Dataset.objects.get(pk=dataset.pk).sync_cursor == keys[2 * reconcile.BATCH - 1]
    assert StateObject.objects.count() == 2 * reconcile.BATCH
    monkeypatch.setattr(registry_writer, "write_batch", real_write)
    assert sync_dataset(dataset).new == len(keys) - 2 * reconcile.BATCH


def sync_with_a_publication_meanwhile(root, monkeypatch) -> tuple[list[str], Dataset]:
    """Sync five keys while a publication registers one of them between the comparison and the write."""
    keys = [update_key(i) for i in range(5)]
    put_objects(root, keys)
    dataset = make_dataset(root)
    real_compare = sync.compare

    def publication_meanwhile(*args):
        changes = real_compare(*args)
        now = timezone.now()
        StateObject.objects.create(
            dataset=dataset,
            key=keys[2],
            kind=ObjectKind.UPDATE,
            sha256="ab" * 32,
            first_seen=now,
            last_seen=now,
        )
        return changes

    monkeypatch.setattr(sync, "compare", publication_meanwhile)
    sync_dataset(dataset)
    return keys, dataset


def test_a_key_registered_by_a_publication_during_the_sync_keeps_its_row(file_root, monkeypatch):
    keys, dataset = sync_with_a_publication_meanwhile(file_root, monkeypatch)

    rows = StateObject.objects.filter(dataset=dataset)
    assert sorted(rows.values_list("key", flat=True)) == keys
    assert rows.get(key=keys[2]).sha256 == "ab" * 32


@pytest.mark.django_db(transaction=True)
def test_a_key_registered_during_a_sync_writing_on_its_own_connection_keeps_its_row(file_root, monkeypatch):
    keys, dataset = sync_with_a_publication_meanwhile(file_root, monkeypatch)

    rows = StateObject.objects.filter(dataset=dataset)
    assert sorted(rows.values_list("key", flat=True)) == keys
    assert rows.get(key=keys[2]).sha256 == "ab" * 32
