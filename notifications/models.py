"""Webhooks, the events they are told of, and one delivery row per (event, webhook) (DESIGN §6)."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models

from dmsupdate.choices import ColouredChoices
from publications.models import Dataset


class EventKind(models.TextChoices):
    PUBLICATION_APPLIED = "publication.applied"
    SERVER_FAILING = "server.failing"
    SERVER_UNREACHABLE = "server.unreachable"
    SERVER_DIVERGED = "server.diverged"
    JOB_FAILED = "job.failed"


def new_secret() -> str:
    return secrets.token_urlsafe(32)


class Webhook(models.Model):
    """A URL told of a dataset's events (every dataset's when `dataset` is empty), signed with `secret`."""

    dataset = models.ForeignKey(
        Dataset, on_delete=models.CASCADE, null=True, blank=True, related_name="webhooks"
    )
    url = models.URLField(max_length=1024)
    # HMAC-SHA256 key of the X-DMS-Signature header; shown once, when the webhook is created.
    secret = models.CharField(max_length=128, default=new_secret)
    events = models.JSONField(default=list, blank=True, help_text="event names; empty: every event")
    enabled = models.BooleanField(default=True)
    description = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return self.url

    def wants(self, kind: str) -> bool:
        return self.enabled and (not self.events or kind in self.events)


class Event(models.Model):
    """Something a webhook may be told of; `subject` makes it unique (one event per publication, per transition)."""

    kind = models.CharField(max_length=32, choices=EventKind.choices)
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, null=True, blank=True)
    subject = models.CharField(max_length=200)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-pk"]
        constraints = [models.UniqueConstraint(fields=["kind", "subject"], name="unique_event_subject")]

    def __str__(self) -> str:
        return f"{self.kind} {self.subject}"


class DeliveryStatus(ColouredChoices):
    PENDING = "pending", "info", "pending"
    SUCCEEDED = "succeeded", "good", "succeeded"
    FAILED = "failed", "bad", "failed"


class Delivery(models.Model):
    """One event for one webhook: attempted until it succeeds or the attempts run out, never again after success."""

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    response_status = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-pk"]
        constraints = [
            models.UniqueConstraint(fields=["event", "webhook"], name="one_delivery_per_event_and_hook")
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="delivery_due_idx",
                condition=models.Q(status="pending"),
            )
        ]

    def __str__(self) -> str:
        return f"{self.event} → {self.webhook}"


class ObservedState(models.Model):
    """The state each server was last seen in, so a change into a state with an event is told once."""

    server_id = models.BigIntegerField(primary_key=True)
    state = models.CharField(max_length=16)
    since = models.DateTimeField()

    def __str__(self) -> str:
        return f"server {self.server_id}: {self.state}"


class AppliedMark(models.Model):
    """Per dataset: publications up to this effective time were told applied on every enabled server."""

    dataset = models.OneToOneField(Dataset, on_delete=models.CASCADE, primary_key=True)
    effective_ns = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.dataset_id}: {self.effective_ns}"
