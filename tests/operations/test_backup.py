"""Registry backup to the state root and blind restore into an empty database."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.core.management.color import no_style
from django.db import connection
from django.utils import timezone

from accounts.models import ApiToken, Role
from audit.models import AuditEvent
from audit.services import record, verify_chain
from dmsupdate.state.keys import EffectiveTime, format_key
from dmsupdate.state.stores import open_store
from jobs.models import Job, JobKind, JobStatus
from jobs.services import start_job
from notifications.models import Webhook
from operations import backup, restore
from operations.sealing import signature
from publications.models import Dataset, ObjectState, PublicationEvent, StateObject
from servers.models import Server, StatusReport, UpdateRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def registry(any_root, settings):
    """A registry with a row in every table a backup covers, and an audit chain; backups go to their own root."""
    root, endpoint = any_root
    backup_root = root + "-backups"
    settings.DMSUPDATE = {**settings.DMSUPDATE, "BACKUP_ROOT": backup_root, "BACKUP_ENDPOINT": endpoint or ""}
    users = get_user_model().objects
    admin = users.create_superuser("ada", password="pw-for-ada")
    publisher = users.create_user("pat", password=None)
    dataset = Dataset.objects.create(name="flood", s3root=root, s3endpoint=endpoint or "", gc_keep_images=3)
    other = Dataset.objects.create(name="rivers", s3root=root + "-rivers", s3endpoint=endpoint or "")
    server = Server.objects.create(
        name="fuseki-1",
        dataset=dataset,
        agent_url="http://10.0.0.5:8080",
        agent_token="t0k",
        effective_ns=123456789,
    )
    now = timezone.now()
    key = format_key(EffectiveTime.now(), "readings", "add", "http://example.org/g", "ttl")
    obj = StateObject.for_key(dataset, key, ObjectState.PUBLISHED, now, size=10, sha256="ab" * 32)
    obj.tags = sorted([*obj.tags, "flood-alert"])
    obj.save()
    PublicationEvent.objects.create(
        dataset=dataset,
        object=obj,
        key=key,
        source="readings",
        op="add",
        effective_ns=obj.effective_ns,
        user=publisher,
        s3_url=f"{root}/{key}",
        idempotency_key="once",
        response={"id": 1, "key": key},
        tags=obj.tags,
    )
    token, _ = ApiToken.issue(
        publisher, Role.PUBLISHER, name="ci", labels=["readings"], datasets=[dataset, other]
    )
    job = Job.objects.create(
        kind=JobKind.UPDATE, server=server, requested_by=admin, actor="ada", result={"x": [1]}
    )
    UpdateRun.objects.create(
        server=server,
        job=job,
        started_at=now - timedelta(seconds=3),
        finished_at=now,
        result="ok",
        ops_applied=4,
    )
    StatusReport.objects.create(
        server=server, received_at=now, effective_ns=123456789, succeeded=True, body={"a": 1}
    )
    for i in range(5):
        record("ada", "test.event", f"target-{i}", {"n": i, "when": now, "nested": {"k": [i, "é"]}})
    Webhook.objects.create(dataset=dataset, url="https://hooks.example.org/dms", events=["job.failed"])
    return {"dataset": dataset, "root": backup_root, "endpoint": endpoint, "token": token}


def snapshot() -> dict[str, list[dict]]:
    """Every covered row as its field values (and tokens' dataset links)."""
    rows = {
        label: list(backup.model_of(label)._default_manager.order_by("pk").values())
        for label in backup.MODELS
    }
    rows["token datasets"] = sorted(
        ApiToken.datasets.through.objects.values_list("apitoken_id", "dataset_id")
    )
    return rows


def empty_database() -> None:
    """What a fresh install looks like: every table emptied (TRUNCATE, which the audit trigger allows)."""
    tables = connection.introspection.django_table_names(only_existing=True, include_views=False)
    with connection.cursor() as cur:
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no deferred FK checks pending on the rows
        for sql in connection.ops.sql_flush(no_style(), tables, reset_sequences=True, allow_cascade=True):
            cur.execute(sql)


def test_backup_then_restore_into_an_empty_database_gives_the_same_rows(registry):
    before = snapshot()
    result = backup.backup_registry(actor="ada")
    assert result["key"].startswith("backups/registry-") and result["key"].endswith(".jsonl.gz")
    assert result["counts"]["audit.auditevent"] == len(before["audit.auditevent"])

    empty_database()
    assert not AuditEvent.objects.exists()
    restored = restore.restore_registry(registry["root"], registry["endpoint"], actor="ada", sync=False)

    after = snapshot()
    # The restore itself is the one new audit row, appended to the restored chain.
    assert after["audit.auditevent"][-1]["action"] == "registry.restored"
    after["audit.auditevent"] = after["audit.auditevent"][:-1]
    # The backup's own audit row was written after the backup was taken.
    assert before["audit.auditevent"] == after["audit.auditevent"]
    for label in backup.MODELS:
        if label != "audit.auditevent":
            assert before[label] == after[label], label
    assert len(before["notifications.webhook"]) == 1  # webhooks and their secrets come back
    assert before["token datasets"] == after["token datasets"]
    assert "flood-alert" in StateObject.objects.get().tags  # tags are part of the registry's backup
    assert len([t for t in PublicationEvent.objects.get().tags if t.startswith("day:")]) == 1
    assert restored.counts["servers.server"] == 1
    assert verify_chain().ok
    assert get_user_model().objects.get(username="ada").check_password("pw-for-ada")
    # New rows get fresh ids after the restored ones.
    new = Dataset.objects.create(name="lakes", s3root="file:///tmp/lakes")
    assert new.pk > max(d["id"] for d in before["publications.dataset"])


def test_restore_refuses_a_database_that_is_not_empty(registry):
    backup.backup_registry()
    with pytest.raises(backup.BackupError, match="not empty"):
        restore.restore_registry(registry["root"], registry["endpoint"], sync=False)


def test_a_truncated_backup_restores_nothing(registry):
    store = open_store(registry["root"], registry["endpoint"])
    buf = io.BytesIO()
    backup.write_backup(buf)
    lines = gzip.decompress(buf.getvalue()).decode().splitlines()
    cut = gzip.compress(("\n".join(lines[:-3]) + "\n").encode())
    store.put_new("backups/registry-cut.jsonl.gz", io.BytesIO(cut), len(cut))
    sig = signature("backups/registry-cut.jsonl.gz", hashlib.sha256(cut).hexdigest(), None)
    store.put_new("backups/registry-cut.jsonl.gz.sig", io.BytesIO(sig), len(sig))
    empty_database()

    with pytest.raises(backup.BackupError, match="truncated"):
        restore.restore_registry(
            registry["root"], registry["endpoint"], key="backups/registry-cut.jsonl.gz", sync=False
        )

    assert restore.occupied_tables() == []


def test_backup_lines_are_json_with_a_header_and_counts(registry):
    buf = io.BytesIO()
    counts = backup.write_backup(buf)
    lines = [json.loads(line) for line in gzip.decompress(buf.getvalue()).splitlines()]
    assert lines[0]["format"] == "dmsupdate-registry" and lines[0]["version"] == 1
    assert lines[-1] == {"end": True, "counts": counts}
    token = next(line for line in lines if line.get("model") == "accounts.apitoken")
    assert token["fields"]["key_hash"] == registry["token"].key_hash
    assert sorted(token["fields"]["datasets"]) == sorted(d.pk for d in Dataset.objects.all())


def test_backup_command_writes_to_the_backup_root_and_restore_command_reads_the_url(registry, tmp_path):
    out = io.StringIO()
    call_command("backup_registry", stdout=out)
    written = [
        line.split(" ", 1)[1].strip() for line in out.getvalue().splitlines() if line.startswith("written:")
    ]
    assert len(written) == 1 and written[0].startswith(registry["root"])
    job = Job.objects.get(kind=JobKind.BACKUP)
    assert job.status == JobStatus.SUCCEEDED
    url = written[0]

    empty_database()
    out = io.StringIO()
    call_command(
        "restore_registry",
        "--from",
        url,
        "--no-sync",
        *(["--endpoint", registry["endpoint"]] if registry["endpoint"] else []),
        stdout=out,
    )

    assert f"restored from {url}" in out.getvalue()
    assert Dataset.objects.filter(name="flood").exists()
    assert verify_chain().ok


def test_restore_command_without_a_backup_says_how_to_rebuild(registry):
    empty_database()
    with pytest.raises(CommandError, match="no backup under .*--rebuild-from-bucket"):
        call_command(
            "restore_registry",
            "--root",
            registry["root"],
            *(["--endpoint", registry["endpoint"]] if registry["endpoint"] else []),
        )


def test_restore_command_reads_the_configured_backup_root_by_default(settings, tmp_path):
    settings.DMSUPDATE = {**settings.DMSUPDATE, "BACKUP_ROOT": f"file://{tmp_path}/backups"}
    with pytest.raises(CommandError, match=f"no backup under file://{tmp_path}/backups"):
        call_command("restore_registry")


def test_backup_job_through_the_queue_runner(registry):
    job = start_job(JobKind.BACKUP, actor="ada", run_now=True)
    assert job.status == JobStatus.SUCCEEDED
    assert AuditEvent.objects.filter(action="registry.backup", target=job.result["key"]).exists()


def test_restore_reconciles_with_the_bucket_after_loading_the_backup(registry):
    backup.backup_registry()
    store = registry["dataset"].open_store()
    late = format_key(EffectiveTime.now(), "readings", "add", "http://example.org/late", "ttl")
    store.put_new(late, io.BytesIO(b"<a> <b> <c> ."), 13)
    empty_database()

    result = restore.restore_registry(registry["root"], registry["endpoint"])

    assert StateObject.objects.get(dataset__name="flood", key=late).state == ObjectState.PUBLISHED
    assert "flood" in result.synced and "rivers" in result.synced
    assert verify_chain().ok


def test_registry_is_rebuilt_from_the_bucket_alone(any_root):
    root, endpoint = any_root
    store = open_store(root, endpoint)
    keys = [
        format_key(EffectiveTime.now(), "dmsupdate", "dump"),
        format_key(EffectiveTime.now(), "readings", "drop", "http://example.org/g"),
    ]
    for key in keys:
        store.put_new(key, io.BytesIO(b""), 0)
    out = io.StringIO()

    call_command(
        "restore_registry",
        "--rebuild-from-bucket",
        "--dataset",
        "flood",
        "--root",
        root,
        *(["--endpoint", endpoint] if endpoint else []),
        stdout=out,
    )

    dataset = Dataset.objects.get(name="flood")
    assert dataset.s3root == root and (dataset.s3endpoint or None) == endpoint
    assert sorted(StateObject.objects.filter(dataset=dataset).values_list("key", flat=True)) == sorted(keys)
    assert AuditEvent.objects.filter(action="registry.rebuilt_from_bucket", target="flood").exists()
    with pytest.raises(CommandError, match="already exists"):
        call_command("restore_registry", "--rebuild-from-bucket", "--dataset", "flood", "--root", root)
