"""Registry backups and the audit log against someone who can read or write a bucket, or run SQL."""

from __future__ import annotations

import gzip
import io
import json
from io import StringIO

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from audit.models import AuditEvent
from audit.services import record, verify_chain
from dmsupdate.state.stores import open_store
from operations import backup, restore
from publications.models import Dataset
from servers.models import Server
from tests.operations.test_backup import empty_database

pytestmark = pytest.mark.django_db
AGENT_TOKEN = "agent-token-of-web1-do-not-leak"


@pytest.fixture
def fleet(any_root, settings, tmp_path):
    root, endpoint = any_root
    backup_root = f"file://{tmp_path}/backups"
    settings.DMSUPDATE = {**settings.DMSUPDATE, "BACKUP_ROOT": backup_root, "BACKUP_ENDPOINT": ""}
    get_user_model().objects.create_superuser("ada", password="the-real-admin-password")
    dataset = Dataset.objects.create(name="flood", s3root=root, s3endpoint=endpoint or "")
    Server.objects.create(name="web1", dataset=dataset, agent_token=AGENT_TOKEN)
    record("ada", "test.event", "flood")
    return {"dataset": dataset, "store": open_store(backup_root, None), "backup_root": backup_root}


def test_a_backup_goes_to_its_own_root_with_no_secret_in_plain_text(fleet):
    result = backup.backup_registry(actor="ada")
    assert [
        i.key for i in fleet["dataset"].open_store().list("backups/")
    ] == []  # the dataset's root has none
    with fleet["store"].open(result["key"]) as f:
        text = gzip.decompress(f.read()).decode()
    password_hash = get_user_model().objects.get(username="ada").password
    assert AGENT_TOKEN not in text and password_hash not in text
    assert fleet["store"].head(result["key"] + ".sig").size > 0


def test_a_backup_root_inside_a_dataset_root_is_refused(fleet, settings):
    settings.DMSUPDATE = {**settings.DMSUPDATE, "BACKUP_ROOT": fleet["dataset"].s3root + "/private"}
    with pytest.raises(backup.BackupError, match="overlaps the root of dataset flood"):
        backup.backup_registry()


def planted_backup(fleet) -> str:
    """An attacker's 'newer' backup: the same registry, with their own password for ada."""
    buf = io.BytesIO()
    backup.write_backup(buf)
    lines = [json.loads(line) for line in gzip.decompress(buf.getvalue()).splitlines()]
    for line in lines:
        if line.get("model") == "auth.user":
            user = get_user_model()(username="ada")
            user.set_password("attacker")
            line["fields"]["password"] = user.password
    body = gzip.compress("".join(json.dumps(line) + "\n" for line in lines).encode())
    key = "backups/registry-2099-01-01T00-00-00-000000Z.jsonl.gz"
    fleet["store"].put_new(key, io.BytesIO(body), len(body))
    return key


def test_restore_passes_over_a_planted_newer_backup_and_refuses_it_by_name(fleet):
    genuine = backup.backup_registry()["key"]
    planted = planted_backup(fleet)
    empty_database()
    with pytest.raises(backup.BackupError, match="no signature"):
        restore.restore_registry(fleet["backup_root"], key=planted, sync=False)
    assert restore.occupied_tables() == []
    result = restore.restore_registry(fleet["backup_root"], sync=False)
    assert result.key.endswith(genuine)
    assert authenticate(username="ada", password="attacker") is None
    assert authenticate(username="ada", password="the-real-admin-password") is not None
    assert Server.objects.get(name="web1").agent_token == AGENT_TOKEN  # unsealed on the way back


def test_a_signature_copied_beside_another_file_or_a_swapped_body_is_refused(fleet):
    genuine = backup.backup_registry()["key"]
    planted = planted_backup(fleet)
    with fleet["store"].open(genuine + ".sig") as f:
        sig = f.read()
    fleet["store"].put_new(planted + ".sig", io.BytesIO(sig), len(sig))
    empty_database()
    with pytest.raises(backup.BackupError, match="not made with this deployment's backup key"):
        restore.restore_registry(fleet["backup_root"], key=planted, sync=False)
    with fleet["store"].open(planted) as f:
        body = f.read()
    fleet["store"].put(genuine, io.BytesIO(body), len(body))  # the genuine name, the attacker's content
    with pytest.raises(backup.BackupError, match="not the file its signature covers"):
        restore.restore_registry(fleet["backup_root"], key=genuine, sync=False)
    assert restore.occupied_tables() == []


def test_a_backup_sealed_with_another_key_does_not_restore(fleet, settings):
    backup.backup_registry()
    empty_database()
    settings.DMSUPDATE = {**settings.DMSUPDATE, "BACKUP_KEY": "another deployment"}
    with pytest.raises(backup.BackupError, match="no backup signed by this deployment"):
        restore.restore_registry(fleet["backup_root"], sync=False)


def test_the_audit_log_refuses_truncate():
    record("ada", "test.event", "x")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cur:
        cur.execute("TRUNCATE audit_auditevent")
    assert AuditEvent.objects.count() == 1


def verify() -> tuple[int, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("verify_audit", stdout=out, stderr=err)
    except SystemExit as exc:
        return int(exc.code or 0), err.getvalue()
    return 0, out.getvalue()


def test_an_empty_audit_log_is_not_reported_intact():
    check = verify_chain()
    assert not check.ok and "empty" in check.reason
    assert verify()[0] == 1


def as_superuser(sql: str) -> None:
    """SQL with the triggers off, as a database superuser could run it."""
    with connection.cursor() as cur:
        cur.execute("SET session_replication_role = replica")
        cur.execute(sql)
        cur.execute("SET session_replication_role = origin")


def test_a_log_cut_after_the_newest_backup_is_found(fleet):
    record("ada", "test.event", "two")
    record("ada", "test.event", "three")
    backup.backup_registry()  # records the chain's head beside the backup
    assert verify()[0] == 0
    newest = AuditEvent.objects.order_by("-id").values_list("id", flat=True)[:2]
    as_superuser(f"DELETE FROM audit_auditevent WHERE id >= {min(newest)}")
    status, text = verify()
    assert status == 1 and "recorded outside the table" in text


def test_a_log_emptied_and_rebuilt_is_found(fleet):
    backup.backup_registry()
    as_superuser("DELETE FROM audit_auditevent")
    record("mallory", "test.event", "a fresh chain")
    status, text = verify()
    assert status == 1 and "recorded outside the table" in text
