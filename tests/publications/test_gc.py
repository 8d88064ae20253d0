"""GC: what is expired, what is deleted, what a lagging server keeps, and the dry run's honesty."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_q.models import Schedule

from audit.models import AuditEvent
from dmsupdate.state.keys import EffectiveTime, format_key, parse_key
from dmsupdate.state.stores import ObjectNotFound
from jobs.models import Job, JobKind, JobStatus
from jobs.services import start_job
from operations.schedules import BACKUP_TASK
from operations.schedules import ensure_schedules as ensure_backup_schedule
from publications import gc
from publications.models import Dataset, ObjectKind, ObjectState, StateObject
from publications.schedules import GC_TASK, ensure_schedules
from publications.tasks import gc_task
from servers.models import Server

pytestmark = pytest.mark.django_db

HOUR = 3600 * 10**9
NOW = timezone.now()


def ago(hours: float) -> EffectiveTime:
    return EffectiveTime.from_datetime(NOW - timedelta(hours=hours))


_stores: dict = {}


def store_of(dataset: Dataset):
    """One store per dataset for the test's own writes and checks (opening S3 clients is slow)."""
    if dataset.s3root not in _stores:
        _stores[dataset.s3root] = dataset.open_store()
    return _stores[dataset.s3root]


def put(
    dataset: Dataset,
    key: str,
    state: str = ObjectState.PUBLISHED,
    seen_hours_ago: float = 24 * 40,
    changed_hours_ago: float | None = None,
) -> StateObject:
    """Write an object into the dataset's root and register it as sync_state would."""
    body = b"<http://a> <http://b> <http://c> .\n"
    store_of(dataset).put_new(key, io.BytesIO(body), len(body))
    try:
        fields = StateObject.fields_from_key(parse_key(key))
    except ValueError:
        fields = {"kind": ObjectKind.OTHER}
    return StateObject.objects.create(
        dataset=dataset,
        key=key,
        state=state,
        size=len(body),
        first_seen=NOW - timedelta(hours=seen_hours_ago),
        last_seen=NOW,
        state_changed_at=None if changed_hours_ago is None else NOW - timedelta(hours=changed_hours_ago),
        **fields,
    )


def image(hours: float, op: str = "image") -> str:
    return format_key(ago(hours), "dmsupdate", op)


def update(hours: float, n: int = 0) -> str:
    return format_key(ago(hours), "readings", "replace", f"http://example.org/graph/{n}", "ttl")


def exists(dataset: Dataset, key: str) -> bool:
    try:
        store_of(dataset).head(key)
    except ObjectNotFound:
        return False
    return True


@pytest.fixture
def dataset(any_root):
    root, endpoint = any_root
    return Dataset.objects.create(
        name="flood",
        s3root=root,
        s3endpoint=endpoint or "",
        gc_keep_images=2,
        gc_min_age_hours=24,
        gc_grace_hours=48,
    )


@pytest.fixture
def history(dataset):
    """Three images 30, 20 and 10 days old, updates after each, extras, a backup and failed publications."""
    keys = {
        "image_a": image(720),
        "image_b": image(480),
        "dump_b": image(480, "dump"),
        "image_c": image(240),
        "u1": update(700, 1),
        "u2": update(600, 2),
        "u3": update(500, 3),
        "u4": update(470, 4),
        "u5": update(300, 5),
        "u6": update(200, 6),
        "u_recent": update(1, 7),
    }
    objects = {name: put(dataset, key) for name, key in keys.items()}
    objects["u0"] = put(dataset, update(710, 0), state=ObjectState.EXPIRED, changed_hours_ago=72)
    objects["u0_young"] = put(dataset, update(705, 9), state=ObjectState.EXPIRED, changed_hours_ago=12)
    objects["failed_old"] = put(dataset, update(100, 8), state=ObjectState.UNPUBLISHED, seen_hours_ago=72)
    objects["failed_new"] = put(dataset, update(2, 10), state=ObjectState.UNPUBLISHED, seen_hours_ago=2)
    objects["opt"] = put(dataset, "images/fuseki.opt", state=ObjectState.PUBLISHED)
    objects["config"] = put(dataset, "images/config.ttl", state=ObjectState.PUBLISHED)
    objects["backup"] = put(dataset, "backups/2026-11-01T00-00-00Z.jsonl.gz", state=ObjectState.UNPUBLISHED)
    return objects


def state(obj: StateObject) -> str:
    obj.refresh_from_db()
    return obj.state


def test_lagging_server_keeps_what_it_needs_and_dry_run_equals_real_run(dataset, history):
    Server.objects.create(name="current", dataset=dataset, effective_ns=history["u6"].effective_ns)
    Server.objects.create(name="lagging", dataset=dataset, effective_ns=history["u1"].effective_ns)
    Server.objects.create(name="retired", dataset=dataset, enabled=False)

    dry = gc.collect(dataset, dry_run=True)
    real = gc.collect(dataset)

    # Image A is beyond the two kept; u1 is covered by image B and applied everywhere.
    assert dry["expire"] == sorted([history["image_a"].key]) + [history["u1"].key]
    assert dry["held_for"] == {"lagging": 2}
    assert dry["rebuild_servers"] == []
    assert dry["kept_images"] == [history["image_c"].key, history["dump_b"].key, history["image_b"].key]
    # Expired before the grace period and old failed publications go; nothing else.
    assert dry["delete"] == sorted([history["u0"].key, history["failed_old"].key])
    assert real["deleted"] == dry["delete"]
    assert real["expire"] == dry["expire"]

    for name in ("u0", "failed_old"):
        assert state(history[name]) == ObjectState.DELETED
        assert not exists(dataset, history[name].key)
    for name in ("image_a", "u1"):
        assert state(history[name]) == ObjectState.EXPIRED
        assert exists(dataset, history[name].key)
    for name in ("image_b", "image_c", "dump_b", "u2", "u3", "u4", "u5", "u6", "u_recent", "opt", "config"):
        assert state(history[name]) == ObjectState.PUBLISHED
        assert exists(dataset, history[name].key)
    assert (
        state(history["failed_new"]) == ObjectState.UNPUBLISHED
        and state(history["u0_young"]) == ObjectState.EXPIRED
    )
    assert exists(dataset, history["backup"].key)
    history["u1"].refresh_from_db()
    assert history["u1"].state_changed_at >= NOW

    row = AuditEvent.objects.get(action="gc.run", target="flood")
    assert row.details["deleted_count"] == 2 and row.details["held_for"] == {"lagging": 2}
    assert AuditEvent.objects.filter(action="gc.dry_run", target="flood").exists()


def test_expired_objects_are_deleted_once_the_grace_period_has_passed(dataset, history):
    gc.collect(dataset)
    StateObject.objects.filter(state=ObjectState.EXPIRED).update(state_changed_at=NOW - timedelta(hours=49))

    dry = gc.collect(dataset, dry_run=True)
    real = gc.collect(dataset)

    expected = sorted(history[n].key for n in ("image_a", "u1", "u2", "u3", "u0_young"))
    assert dry["delete"] == expected and real["deleted"] == expected
    assert not any(exists(dataset, key) for key in expected)
    assert all(state(history[n]) == ObjectState.DELETED for n in ("image_a", "u3"))
    assert exists(dataset, history["image_b"].key) and exists(dataset, history["u4"].key)


def test_forced_run_names_the_servers_that_must_be_rebuilt(dataset, history):
    Server.objects.create(name="lagging", dataset=dataset, effective_ns=history["u1"].effective_ns)
    Server.objects.create(name="new", dataset=dataset)

    held = gc.collect(dataset, dry_run=True)
    assert held["held_for"] == {"lagging": 2, "new": 3}
    assert held["expire"] == [history["image_a"].key]

    dry = gc.collect(dataset, dry_run=True, force=True)
    assert dry["rebuild_servers"] == ["lagging", "new"]
    assert set(dry["expire"]) == {history[n].key for n in ("image_a", "u1", "u2", "u3")}

    real = gc.collect(dataset, force=True)
    assert real["expire"] == dry["expire"] and real["deleted"] == dry["delete"]
    assert state(history["u3"]) == ObjectState.EXPIRED
    assert AuditEvent.objects.get(action="gc.forced").details["rebuild_servers"] == ["lagging", "new"]


def test_newest_image_and_extras_are_never_collected(dataset):
    dataset.gc_keep_images = 0
    dataset.gc_min_age_hours = 0
    dataset.gc_grace_hours = 0
    dataset.save()
    only = put(dataset, image(500))
    older = put(dataset, image(600))
    opt = put(dataset, "images/fuseki.opt", state=ObjectState.EXPIRED, changed_hours_ago=1000)
    old_update = put(dataset, update(550))

    real = gc.collect(dataset, force=True)

    assert real["kept_images"] == [only.key]
    assert real["deleted"] == sorted([older.key, old_update.key])
    assert state(only) == ObjectState.PUBLISHED and exists(dataset, only.key)
    assert state(opt) == ObjectState.EXPIRED and exists(dataset, opt.key)


def test_updates_younger_than_the_minimum_age_are_kept(dataset):
    put(dataset, image(10))
    young = put(dataset, update(20))
    result = gc.collect(dataset, dry_run=True)
    assert young.key not in result["expire"]


def test_deletes_go_in_batches_of_a_thousand_keys(file_root, monkeypatch):
    dataset = Dataset.objects.create(name="big", s3root=file_root[0], gc_grace_hours=1)
    store = dataset.open_store()
    monkeypatch.setattr(Dataset, "open_store", lambda self: store)
    keys = [
        format_key(EffectiveTime(1_000_000 * HOUR + i), "readings", "drop", f"http://g/{i}")
        for i in range(1001)
    ]
    for key in keys:
        store.put_new(key, io.BytesIO(b""), 0)
    old = NOW - timedelta(days=10)
    StateObject.objects.bulk_create(StateObject.for_key(dataset, k, ObjectState.EXPIRED, old) for k in keys)

    job = start_job(JobKind.GC, dataset=dataset, run_now=True)

    assert job.status == JobStatus.SUCCEEDED
    assert job.result["datasets"]["big"]["deleted_count"] == 1001
    assert store.stats.delete_calls == 2
    assert StateObject.objects.filter(dataset=dataset, state=ObjectState.DELETED).count() == 1001
    assert list(store.list("updates/")) == []


def test_gc_command_dry_run_lists_keys_and_changes_nothing(dataset, history):
    Server.objects.create(name="lagging", dataset=dataset, effective_ns=history["u1"].effective_ns)
    out = io.StringIO()

    call_command("gc", "--dry-run", "--dataset", "flood", stdout=out)

    text = out.getvalue()
    assert f"    {history['image_a'].key}" in text and f"    {history['u0'].key}" in text
    assert "kept for lagging server lagging: 2 updates" in text
    assert state(history["u0"]) == ObjectState.EXPIRED and exists(dataset, history["u0"].key)


def test_gc_command_refuses_an_unknown_dataset():
    with pytest.raises(CommandError, match="no dataset named 'nope'"):
        call_command("gc", "--dataset", "nope")


def test_gc_and_backup_are_scheduled_daily():
    ensure_schedules()
    ensure_backup_schedule()
    for func in (GC_TASK, BACKUP_TASK):
        assert Schedule.objects.get(func=func).schedule_type == Schedule.DAILY


def test_scheduled_gc_runs_as_a_job_of_the_schedule(dataset, history):
    result = gc_task()

    job = Job.objects.get(kind=JobKind.GC)
    assert job.actor == "schedule" and job.status == JobStatus.SUCCEEDED
    assert result["datasets"]["flood"]["deleted"] == sorted([history["u0"].key, history["failed_old"].key])


def test_store_failure_leaves_the_registry_as_it_was_and_fails_the_job(moto_server):
    dataset = Dataset.objects.create(name="gone", s3root="s3://no-such-bucket/dms", s3endpoint=moto_server)
    key = update(500)
    old = NOW - timedelta(days=10)
    row = StateObject.objects.create(
        dataset=dataset,
        key=key,
        state=ObjectState.EXPIRED,
        state_changed_at=old,
        first_seen=old,
        last_seen=old,
        **StateObject.fields_from_key(parse_key(key)),
    )

    job = start_job(JobKind.GC, dataset=dataset, run_now=True)

    assert job.status == JobStatus.FAILED
    entry = job.result["datasets"]["gone"]
    assert entry["failed"] == [key] and entry["deleted"] == []
    assert "no-such-bucket" in entry["error"]
    assert state(row) == ObjectState.EXPIRED
