"""Data servers, the status reports their agents send, and the update runs triggered on them."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, models

from dmsupdate.choices import ColouredChoices
from dmsupdate.state.keys import EffectiveTime
from publications.models import Dataset


class ServerState(ColouredChoices):
    """A server's replay state as shown on the dashboard and in the API (DESIGN §6)."""

    OK = "ok", "good", "ok"
    BEHIND = "behind", "warn", "behind"
    FAILING = "failing", "bad", "failing"
    UNREACHABLE = "unreachable", "bad", "unreachable"
    REBUILDING = "rebuilding", "info", "rebuilding"
    DISABLED = "disabled", "mute", "disabled"
    DIVERGED = "diverged", "bad", "diverged"


def no_credentials_in_url(value: str) -> None:
    """Refuse `user:password@` in an agent URL: it would be shown on every page that shows the URL."""
    if "@" in urlsplit(value).netloc:
        raise ValidationError(
            "the agent URL may not carry credentials (user:password@); give the agent's token instead",
            code="credentials_in_url",
        )


class Server(models.Model):
    """A data server kept up to date by a `dms-update` agent."""

    name = models.CharField(max_length=128, unique=True)
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="servers")
    agent_url = models.URLField(
        blank=True,
        help_text="the agent's `serve` address; empty for pull-only agents",
        validators=[no_credentials_in_url],
    )
    agent_token = models.CharField(
        max_length=128, blank=True, help_text="bearer token the agent's serve requires"
    )
    enabled = models.BooleanField(default=True)
    # Last reported status (status.json fields, flattened for the lag query).
    effective_ns = models.BigIntegerField(null=True, blank=True)
    last_report_at = models.DateTimeField(null=True, blank=True)
    last_succeeded = models.BooleanField(null=True, blank=True)
    last_update_at = models.DateTimeField(
        null=True, blank=True, help_text="the agent's clock time of its last run"
    )
    failed_key = models.CharField(max_length=1024, blank=True)
    last_error = models.TextField(blank=True)
    late_keys = models.JSONField(default=list, blank=True)
    invalid_keys = models.JSONField(default=list, blank=True)
    # The agent's readiness (its GET /ready) as of its last report; None: not reported.
    ready = models.BooleanField(null=True, blank=True)
    ready_reason = models.TextField(blank=True)
    # Set when the control plane could not reach the agent; cleared by its next report.
    unreachable_since = models.DateTimeField(null=True, blank=True)
    unreachable_error = models.TextField(blank=True)
    # Set when a rebuild was asked for; the server shows `rebuilding` until a later report.
    rebuild_requested_at = models.DateTimeField(null=True, blank=True)
    # The server's recent apply rate (operations and seconds of its update runs, older runs
    # weighing less): `catch_up_seconds` (DESIGN §6) is its pending updates at this rate.
    apply_ops = models.FloatField(default=0, db_default=0)
    apply_seconds = models.FloatField(default=0, db_default=0)
    # The newest fingerprint the agent reported (DESIGN §5b) and the effective time it describes.
    fingerprint = models.JSONField(null=True, blank=True)
    fingerprint_ns = models.BigIntegerField(null=True, blank=True)
    # Set when its fingerprint disagreed with the other servers (or the image) at this effective
    # time; `divergence` then holds the comparison (servers.fingerprints). Cleared by agreement or a rebuild.
    diverged_ns = models.BigIntegerField(null=True, blank=True)
    divergence = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["dataset__name", "name"]
        indexes = [models.Index(fields=["dataset", "enabled"], name="server_dataset_idx")]

    def __str__(self) -> str:
        return self.name

    @property
    def effective(self) -> EffectiveTime | None:
        return EffectiveTime(self.effective_ns) if self.effective_ns is not None else None

    @classmethod
    def request_rebuild(cls, pks: list[int], when: datetime) -> None:
        """Show these servers `rebuilding` from `when` until their agents report a rebuild.

        The one place the request is recorded; the report that ends it clears it
        (servers.services.record_report), and a rebuild the agent never took is withdrawn.
        """
        cls.objects.filter(pk__in=pks).update(rebuild_requested_at=when)

    @classmethod
    def withdraw_rebuild(cls, pk: int, when: datetime) -> None:
        """Forget the rebuild requested at `when` (the agent never started it); a later request stays."""
        cls.objects.filter(pk=pk, rebuild_requested_at=when).update(rebuild_requested_at=None)

    # Weight of the apply rate so far when a run adds its own (about the last five runs count).
    APPLY_RATE_MEMORY = 0.8

    @classmethod
    def note_apply_rate(cls, pk: int, ops: int, seconds: float) -> None:
        """Fold one update run (ops applied in seconds) into the server's recent apply rate."""
        cls.note_apply_rates([(pk, ops, seconds)])

    @classmethod
    def note_apply_rates(cls, rates: list[tuple[int, int, float]]) -> None:
        """`note_apply_rate` for several servers (pk, ops, seconds), sent together."""
        if not rates:
            return
        keep = cls.APPLY_RATE_MEMORY
        table = connection.ops.quote_name(cls._meta.db_table)
        with connection.cursor() as cursor:
            cursor.executemany(
                f"UPDATE {table} SET apply_ops = apply_ops * %s + %s, apply_seconds = apply_seconds * %s + %s"
                " WHERE id = %s",
                [(keep, float(ops), keep, float(seconds), pk) for pk, ops, seconds in rates],
            )

    @classmethod
    def set_enabled(cls, pks: list[int], enabled: bool) -> list[str]:
        """Enable or disable these servers; returns the names of those that changed.

        A disabled server is left out of "Update all", publication triggers and "applied on k of N".
        """
        changed = list(cls.objects.filter(pk__in=pks).exclude(enabled=enabled).values_list("name", flat=True))
        cls.objects.filter(name__in=changed).update(enabled=enabled)
        return changed


class StatusReport(models.Model):
    """One status report from an agent (or a failed contact), kept for history and the lag sparkline."""

    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="reports")
    received_at = models.DateTimeField()
    effective_ns = models.BigIntegerField(null=True, blank=True)
    succeeded = models.BooleanField(null=True)
    reachable = models.BooleanField(default=True)
    applied = models.IntegerField(default=0)
    failed_key = models.CharField(max_length=1024, blank=True)
    error = models.TextField(blank=True)
    pending_updates = models.IntegerField(default=0)
    lag_seconds = models.FloatField(default=0)
    body = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-received_at"]
        indexes = [models.Index(fields=["server", "received_at"], name="report_history_idx")]

    def __str__(self) -> str:
        return f"{self.server} @ {self.received_at:%Y-%m-%d %H:%M:%S}"


class LagHour(models.Model):
    """A server's lag over one hour: at its last report of the hour, and the worst reported in it.

    Kept up to date by every report (servers.services.record_report), so the fleet's
    sparklines and the 7-day chart read a row per server and hour, not every report.
    """

    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="lag_hours")
    hour = models.IntegerField(help_text="hours since 1970-01-01 UTC")
    pending_updates = models.IntegerField(default=0)
    lag_seconds = models.FloatField(default=0)
    max_pending = models.IntegerField(default=0)
    max_lag_seconds = models.FloatField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["server", "hour"], name="lag_hour_per_server")]

    def __str__(self) -> str:
        return f"{self.server_id} @ hour {self.hour}"


class Agreement(models.Model):
    """How many servers of a dataset held the same data at the newest effective time they could be compared."""

    dataset = models.OneToOneField(Dataset, on_delete=models.CASCADE, related_name="agreement")
    effective_ns = models.BigIntegerField()
    agreeing = models.IntegerField(help_text="servers that agree with the majority (or the image)")
    compared = models.IntegerField(help_text="servers whose fingerprints were compared at that time")
    with_image = models.BooleanField(default=False, help_text="compared with the image built for that time")
    checked_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.agreeing} of {self.compared} agree ({self.dataset_id})"

    @property
    def effective(self) -> EffectiveTime:
        return EffectiveTime(self.effective_ns)


class RunResult(ColouredChoices):
    """How one update or rebuild of one server ended (or that it is still going)."""

    RUNNING = "running", "info", "running"
    OK = "ok", "good", "ok"
    FAILED = "failed", "bad", "failed"
    UNREACHABLE = "unreachable", "bad", "unreachable"
    TIMEOUT = "timeout", "bad", "timeout"
    BUSY = "busy", "warn", "busy"


class RunKind(models.TextChoices):
    """What a run does: catch up, or start again from the newest image."""

    UPDATE = "update"
    REBUILD = "rebuild"


class RunTrigger(models.TextChoices):
    """Who or what started a run."""

    MANUAL = "manual", "dashboard"
    API = "api", "API"
    PUBLICATION = "publication", "publication"
    SCHEDULE = "schedule", "schedule"
    WATCH = "watch", "agent's own schedule"


class UpdateRun(models.Model):
    """One update or rebuild of one server, triggered by the control plane or reported by a pulling agent."""

    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="runs")
    job = models.ForeignKey("jobs.Job", on_delete=models.SET_NULL, null=True, blank=True, related_name="runs")
    kind = models.CharField(max_length=16, choices=RunKind.choices, default=RunKind.UPDATE)
    trigger = models.CharField(max_length=32, choices=RunTrigger.choices, default=RunTrigger.MANUAL)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    result = models.CharField(max_length=16, choices=RunResult.choices, default=RunResult.RUNNING)
    ops_applied = models.IntegerField(default=0)
    effective_before_ns = models.BigIntegerField(null=True, blank=True)
    effective_after_ns = models.BigIntegerField(null=True, blank=True)
    failed_key = models.CharField(max_length=1024, blank=True)
    error = models.TextField(blank=True)
    # Keys of the run not applied, each with its reason (status.json `skipped`): [{"key", "reason"}].
    skipped = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["server", "started_at"], name="run_history_idx")]

    def __str__(self) -> str:
        return f"{self.kind} {self.server} {self.result}"

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()
