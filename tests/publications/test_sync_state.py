"""sync_state: the registry follows the state root, incrementally, on S3 (moto server) and file://."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

import boto3
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_q.models import Schedule

from dmsupdate.state.keys import NANOS, EffectiveTime, format_key
from jobs.models import JobKind, JobStatus
from jobs.services import start_job
from publications import sync
from publications.models import Dataset, ObjectKind, ObjectState, StateObject
from publications.schedules import SYNC_TASK
from publications.sync import SyncError, sync_dataset
from tests.conftest import free_port

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
T0 = EffectiveTime.parse("2016-01-15", "00-00-00-0").nanos
GRAPH = "http://environment.data.gov.uk/flood-monitoring/graph/readings-{}"


def update_key(i: int) -> str:
    """The i-th update: a replace of a daily readings graph, one second apart."""
    return format_key(EffectiveTime(T0 + i * NANOS), "readings", "replace", GRAPH.format(i), "ttl")


def put_objects(root: tuple[str, str | None], keys: list[str], body: bytes = b"<a> <b> <c> .\n") -> None:
    """Write keys straight into the root (as a publisher writing to S3 itself would)."""
    url, endpoint = root
    parsed = urlparse(url)
    if parsed.scheme == "file":
        for key in keys:
            path = Path(parsed.path) / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
        return
    client = boto3.client("s3", endpoint_url=endpoint)
    prefix = parsed.path.strip("/")

    def put(key: str) -> None:
        client.put_object(Bucket=parsed.netloc, Key=f"{prefix}/{key}", Body=body)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, keys))


def delete_objects(root: tuple[str, str | None], keys: list[str]) -> None:
    url, endpoint = root
    parsed = urlparse(url)
    if parsed.scheme == "file":
        for key in keys:
            (Path(parsed.path) / key).unlink()
        return
    client = boto3.client("s3", endpoint_url=endpoint)
    prefix = parsed.path.strip("/")
    for key in keys:
        client.delete_object(Bucket=parsed.netloc, Key=f"{prefix}/{key}")


def make_dataset(root: tuple[str, str | None], name: str = "flood") -> Dataset:
    return Dataset.objects.create(name=name, s3root=root[0], s3endpoint=root[1] or "")


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


def fail_batch_write(monkeypatch, nth: int, message: str):
    """Make the `nth` batch write raise RuntimeError(message); returns the real writer."""
    real_write = sync._write_batch
    calls = []

    def failing(*args):
        calls.append(1)
        if len(calls) == nth:
            raise RuntimeError(message)
        return real_write(*args)

    monkeypatch.setattr(sync, "_write_batch", failing)
    return real_write


def test_a_crash_mid_sync_never_moves_the_cursor_past_unwritten_keys(any_root, monkeypatch):
    monkeypatch.setattr(sync, "BATCH", 100)
    keys = [update_key(i) for i in range(250)]
    put_objects(any_root, keys)
    dataset = make_dataset(any_root)
    real_write = fail_batch_write(monkeypatch, 2, "worker killed")
    with pytest.raises(RuntimeError):
        sync_dataset(dataset)
    dataset.refresh_from_db()
    assert dataset.sync_cursor == keys[sync.BATCH - 1]
    assert StateObject.objects.count() == sync.BATCH

    monkeypatch.setattr(sync, "_write_batch", real_write)
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
        other.execute("SELECT pg_advisory_lock(%s, %s)", [sync._LOCK_NAMESPACE, dataset.pk])

        with pytest.raises(sync.SyncBusy, match="another sync of this dataset is running"):
            sync_dataset(dataset)

        other.execute("SELECT pg_advisory_unlock(%s, %s)", [sync._LOCK_NAMESPACE, dataset.pk])
        assert sync_dataset(dataset).new == 0


def test_sync_state_command_prints_a_summary_per_dataset(file_root, capsys):
    put_objects(file_root, [update_key(i) for i in range(4)])
    make_dataset(file_root)

    call_command("sync_state", "--dataset", "flood")

    assert "flood: incremental sync listed 4 keys" in capsys.readouterr().out


def test_sync_state_command_for_an_unknown_dataset_fails():
    with pytest.raises(CommandError, match="no dataset named 'nope'"):
        call_command("sync_state", "--dataset", "nope")


@pytest.mark.django_db(transaction=True)
def test_sync_state_command_exits_non_zero_with_one_line_and_no_traceback(moto_server):
    """The real command line, as an admin or cron runs it, against a missing bucket."""
    from django.conf import settings

    Dataset.objects.create(name="gone", s3root="s3://no-such-bucket/x", s3endpoint=moto_server)
    db = settings.DATABASES["default"]
    url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {**__import__("os").environ, "DATABASE_URL": url, "PYTHONPATH": str(ROOT)}

    out = subprocess.run(
        [sys.executable, "manage.py", "sync_state", "--full"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert "sync_state: gone: s3://no-such-bucket/x: bucket 'no-such-bucket' does not exist" in out.stderr
    assert "CommandError: 1 dataset(s) could not be synced" in out.stderr


def test_sync_job_runs_the_sync_and_keeps_its_summary(file_root):
    put_objects(file_root, [update_key(i) for i in range(3)])
    dataset = make_dataset(file_root)

    job = start_job(JobKind.SYNC_STATE, dataset=dataset, params={"full": True}, run_now=True)

    assert job.status == JobStatus.SUCCEEDED
    assert job.result["new"] == 3
    assert job.result["summary"].startswith("flood: full sync listed 3 keys")
    assert job.progress == 100


def test_sync_job_on_a_broken_root_fails_with_the_reason():
    dataset = Dataset.objects.create(name="broken", s3root="file:///nonexistent/root")

    job = start_job(JobKind.SYNC_STATE, dataset=dataset, run_now=True)

    assert job.status == JobStatus.FAILED
    assert job.error == "file:///nonexistent/root: state root file:///nonexistent/root is not a directory"


def test_each_dataset_gets_an_incremental_and_a_daily_full_sync_schedule(file_root):
    dataset = make_dataset(file_root)

    schedules = Schedule.objects.filter(func=SYNC_TASK, args=repr(dataset.pk)).order_by("name")

    assert [(s.name, s.schedule_type) for s in schedules] == [
        ("sync_state --full flood", Schedule.DAILY),
        ("sync_state flood", Schedule.MINUTES),
    ]
    dataset.name = "floods"
    dataset.save()
    assert Schedule.objects.filter(func=SYNC_TASK, args=repr(dataset.pk), name="sync_state floods").exists()
    assert Schedule.objects.filter(func=SYNC_TASK).count() == 2
    dataset.delete()
    assert not Schedule.objects.filter(func=SYNC_TASK).exists()


def test_stale_jobs_are_swept_on_a_schedule():
    assert Schedule.objects.filter(
        func="jobs.tasks.fail_stale_jobs_task", schedule_type=Schedule.MINUTES
    ).exists()


def test_scheduled_sync_task_syncs_the_dataset(file_root):
    from publications.tasks import sync_state_task

    put_objects(file_root, [update_key(0)])
    dataset = make_dataset(file_root)

    result = sync_state_task(dataset.pk, full=True)

    assert result["new"] == 1
    assert sync_state_task(dataset.pk + 1000)["summary"].endswith("no longer exists")


def test_registry_backups_under_the_root_are_not_registered(file_root):
    dataset = make_dataset(file_root)
    put_objects(file_root, [update_key(1), "backups/registry-2026-11-21T01-02-03-000000Z.jsonl.gz"])

    sync_dataset(dataset, full=True)

    assert list(StateObject.objects.filter(dataset=dataset).values_list("key", flat=True)) == [update_key(1)]


# Keys whose byte order (S3's) differs from a natural-language collation: case, `_` and `-`,
# accented and non-Latin letters. A locale-ordered index would cut the batches' key ranges
# elsewhere than the listing does.
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
    monkeypatch.setattr(sync, "BATCH", 2)
    monkeypatch.setattr(sync, "PAGE", 3)
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
    monkeypatch.setattr(sync, "BATCH", 3)
    monkeypatch.setattr(sync, "PAGE", 4)
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
    monkeypatch.setattr(sync, "BATCH", 100)
    keys = [update_key(i) for i in range(450)]
    put_objects(file_root, keys)
    dataset = make_dataset(file_root)
    real_write = fail_batch_write(monkeypatch, 3, "database went away")
    with pytest.raises(RuntimeError, match="database went away"):
        sync_dataset(dataset)

    assert Dataset.objects.get(pk=dataset.pk).sync_cursor == keys[2 * sync.BATCH - 1]
    assert StateObject.objects.count() == 2 * sync.BATCH
    monkeypatch.setattr(sync, "_write_batch", real_write)
    assert sync_dataset(dataset).new == len(keys) - 2 * sync.BATCH


def sync_with_a_publication_meanwhile(root, monkeypatch) -> tuple[list[str], Dataset]:
    """Sync five keys while a publication registers one of them between the comparison and the write."""
    keys = [update_key(i) for i in range(5)]
    put_objects(root, keys)
    dataset = make_dataset(root)
    real_compare = sync._compare

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

    monkeypatch.setattr(sync, "_compare", publication_meanwhile)
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
