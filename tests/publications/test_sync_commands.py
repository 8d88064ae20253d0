"""sync_state from the outside: the command, the job, its schedules, and what it leaves alone."""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command
from django_q.models import Schedule

from jobs.models import JobKind, JobStatus
from jobs.services import start_job
from publications.models import Dataset, StateObject
from publications.schedules import SYNC_TASK
from publications.sync import sync_dataset
from tests.publications.state_roots import (
    ROOT,
    make_dataset,
    put_objects,
    update_key,
)

pytestmark = pytest.mark.django_db


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
