"""django-q2 entry points of the notifications app."""

from __future__ import annotations

from notifications.delivery import attempt, deliver_due
from notifications.models import Delivery, DeliveryStatus
from notifications.services import observe


def deliver_event_task(event_id: int) -> None:
    """Attempt every delivery of a new event now."""
    for pk in Delivery.objects.filter(event_id=event_id, status=DeliveryStatus.PENDING).values_list(
        "pk", flat=True
    ):
        attempt(pk)


def sweep_task() -> dict:
    """Every minute: states that changed with time (reports gone stale), and deliveries due again."""
    return {"events": len(observe()), "attempted": deliver_due()}
