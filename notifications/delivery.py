"""Delivering events to webhooks: signed JSON POSTs, retried with backoff by the worker, never twice after success.

Each (event, webhook) has one Delivery row. An attempt takes the row's lock
(`SELECT ... FOR UPDATE SKIP LOCKED`) and holds it through the POST and the
recording of its outcome, so two workers never send the same delivery at once,
and a delivery that succeeded is never sent again: only `pending` rows are taken.
A failed attempt is tried again after `WEBHOOK_RETRY_SECONDS` × 2^(attempts − 1)
(capped at an hour) until `WEBHOOK_MAX_ATTEMPTS`, then the delivery is `failed`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import datetime, timedelta

import requests
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from notifications.models import Delivery, DeliveryStatus

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-DMS-Signature"
MAX_BACKOFF = 3600.0
TIMEOUT = (3.0, 10.0)


def sign(secret: str, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 of the body with the webhook's secret>`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def body_of(delivery: Delivery) -> bytes:
    event = delivery.event
    return json.dumps(
        {
            "id": event.pk,
            "event": event.kind,
            "dataset": event.dataset.name if event.dataset else None,
            "subject": event.subject,
            "created_at": event.created_at.isoformat(),
            "data": event.data,
        },
        sort_keys=True,
        default=str,
    ).encode()


def backoff(attempts: int) -> float:
    base = float(settings.DMSUPDATE.get("WEBHOOK_RETRY_SECONDS", 30))
    return min(MAX_BACKOFF, base * 2 ** max(0, attempts - 1))


def attempt(delivery_id: int, now: datetime | None = None) -> str | None:
    """Try one due, pending delivery; its status afterwards (None: not due, done, or taken by another worker)."""
    now = now or timezone.now()
    with transaction.atomic():
        delivery = (
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("event__dataset", "webhook")
            .filter(pk=delivery_id, status=DeliveryStatus.PENDING)
            .first()
        )
        if delivery is None or (delivery.next_attempt_at and delivery.next_attempt_at > now):
            return None
        body = body_of(delivery)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "dmsupdate-webhooks",
            SIGNATURE_HEADER: sign(delivery.webhook.secret, body),
            "X-DMS-Event": delivery.event.kind,
            "X-DMS-Delivery": str(delivery.pk),
        }
        code, error = None, ""
        try:
            response = requests.post(
                delivery.webhook.url, data=body, headers=headers, timeout=TIMEOUT, allow_redirects=False
            )
            code = response.status_code
            if not 200 <= code < 300:
                error = f"HTTP {code}: {response.text[:200]}"
        except requests.RequestException as exc:
            error = f"{type(exc).__name__}: {exc}"[:2000]
        delivery.attempts += 1
        delivery.last_attempt_at = now
        delivery.response_status = code
        delivery.error = error
        if not error:
            delivery.status, delivery.delivered_at, delivery.next_attempt_at = (
                DeliveryStatus.SUCCEEDED,
                now,
                None,
            )
        elif delivery.attempts >= int(settings.DMSUPDATE.get("WEBHOOK_MAX_ATTEMPTS", 5)):
            delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, None
            log.warning(
                "webhook delivery %s gave up after %s attempts: %s", delivery.pk, delivery.attempts, error
            )
        else:
            delivery.next_attempt_at = now + timedelta(seconds=backoff(delivery.attempts))
        delivery.save()
        return delivery.status


def deliver_due(now: datetime | None = None, limit: int = 200) -> int:
    """Attempt every pending delivery that is due (oldest first, at most `limit`); how many were attempted."""
    now = now or timezone.now()
    due = list(
        Delivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    return sum(1 for pk in due if attempt(pk, now) is not None)


def enqueue(event_id: int) -> None:
    """Hand an event's deliveries to the worker; the periodic sweep picks them up if the queue is down."""
    from django_q.tasks import async_task

    try:
        async_task("notifications.tasks.deliver_event_task", event_id, task_name=f"webhooks event {event_id}")
    except Exception as exc:  # noqa: BLE001 - the minute's sweep delivers what could not be queued
        log.warning("could not queue the deliveries of event %s: %s", event_id, exc)
