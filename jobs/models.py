"""Background jobs (django-q2 tasks) with their progress, result and requester."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from dmsupdate.choices import ColouredChoices


class JobKind(models.TextChoices):
    """What a job does; each kind's runner is registered by the app that owns it (jobs.registry)."""

    UPDATE = "update", "Update"
    UPDATE_ALL = "update_all", "Update all"
    REBUILD = "rebuild", "Rebuild"
    GC = "gc", "GC"
    BUILD_IMAGE = "build_image", "Build image"
    SYNC_STATE = "sync_state", "Sync state"
    BACKUP = "backup", "Backup"


class JobStatus(ColouredChoices):
    """Where a job is in its life."""

    QUEUED = "queued", "info", "queued"
    RUNNING = "running", "info", "running"
    SUCCEEDED = "succeeded", "good", "succeeded"
    FAILED = "failed", "bad", "failed"


class Job(models.Model):
    """A unit of background work: what, for whom, how far along, and how it ended."""

    kind = models.CharField(max_length=32, choices=JobKind.choices)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    dataset = models.ForeignKey(
        "publications.Dataset", on_delete=models.CASCADE, null=True, blank=True, related_name="jobs"
    )
    server = models.ForeignKey(
        "servers.Server", on_delete=models.CASCADE, null=True, blank=True, related_name="jobs"
    )
    params = models.JSONField(default=dict, blank=True)
    progress = models.PositiveSmallIntegerField(default=0, help_text="percent done")
    progress_text = models.CharField(max_length=500, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    actor = models.CharField(max_length=200, blank=True)
    task_id = models.CharField(max_length=64, blank=True, help_text="django-q2 task id")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="last sign of life from the worker")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "created_at"], name="job_status_idx")]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} {self.status}"

    @property
    def is_gc_dry_run(self) -> bool:
        """A GC that only listed what it would delete (its result page offers the real GC)."""
        return self.kind == JobKind.GC and (self.params or {}).get("dry_run") is True

    @property
    def finished(self) -> bool:
        return self.status in (JobStatus.SUCCEEDED, JobStatus.FAILED)
