"""A probe job for the scale-out tests: its runner appends `job-id pid` to a file.

The qcluster workers import this module (PYTHONPATH is the repository root),
so the file shows which worker process ran which job, and how many times.
"""

from __future__ import annotations

import os
import time

from jobs.registry import registered, runs
from jobs.services import run_job

PROBE_KIND = "probe"


def run_probe_job(job) -> dict:
    """Runner of a probe job: record this run in `params.ledger`, take `params.seconds`."""
    line = f"{job.pk} {os.getpid()}\n".encode()
    # O_APPEND writes this small a line in one piece, whichever worker writes alongside.
    fd = os.open(job.params["ledger"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    time.sleep(float(job.params.get("seconds", 0.05)))
    return {"pid": os.getpid()}


def run_probe_task(job_id: int) -> None:
    """The django-q2 task: `jobs.tasks.run_job_task` with the probe kind known to this worker."""
    if not registered(PROBE_KIND):
        runs(PROBE_KIND)(run_probe_job)
    run_job(job_id)
