"""Deliveries never hold up whoever emitted them; two workers never send one delivery twice; the webhooks page."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django_q.models import OrmQ

from notifications import delivery
from notifications.models import Delivery, DeliveryStatus, Webhook
from tests.notifications.receiver import receiver
from tests.notifications.test_webhooks import publish, register, report


@pytest.mark.django_db(transaction=True)
def test_a_receiver_that_hangs_does_not_hold_up_reports_or_publications(operator, publisher, agent, dataset):
    with receiver(hang=True) as box:
        register(operator, box.url)
        OrmQ.objects.all().delete()
        report(agent, None, ok=False)  # emits server.failing: its delivery is queued, not sent here
        publication = publish(publisher)
        assert publication["key"]
        assert box.received == []  # nothing was sent while the requests were answered
        queued = [task for task in OrmQ.objects.all() if "deliver_event_task" in str(task.func())]
        assert len(queued) == 1
        (pending,) = Delivery.objects.all()
        assert pending.status == DeliveryStatus.PENDING and pending.attempts == 0


@pytest.mark.django_db(transaction=True)
def test_two_workers_at_once_send_a_delivery_once(operator, agent, dataset):
    with receiver(hang=True) as box:
        register(operator, box.url)
        report(agent, None, ok=False)
        (pending,) = Delivery.objects.all()
        outcomes: list = []

        def worker() -> None:
            try:
                outcomes.append(delivery.attempt(pending.pk))
            finally:
                connection.close()

        first = threading.Thread(target=worker)
        first.start()
        while not box.received:  # the first worker holds the row and waits for the receiver
            threading.Event().wait(0.01)
        worker()  # a second worker skips the locked row
        assert outcomes == [None]
        box.hang.set()
        first.join(20)
    assert outcomes == [None, DeliveryStatus.SUCCEEDED]
    assert len(box.received) == 1
    assert delivery.attempt(pending.pk) is None


def test_the_webhooks_page_lists_hooks_and_delivery_outcomes(client, operator, agent, dataset):
    with receiver([500]) as box:
        register(operator, box.url, description="DMS queue")
        report(agent, None, ok=False)
        delivery.deliver_due()
    operator.user.is_superuser = True
    operator.user.save()
    client.force_login(operator.user)
    html = client.get("/webhooks/").content.decode()
    assert box.url in html and "DMS queue" in html
    assert "server.failing" in html and "HTTP 500" in html and "badge-info" in html
    added = client.post("/webhooks/add", {"url": "https://hooks.example.org/x", "events": ["job.failed"]})
    assert added.status_code == 302
    page = client.get("/webhooks/").content.decode()
    secret = Webhook.objects.get(url="https://hooks.example.org/x").secret
    assert secret in page  # shown once, right after adding
    assert secret not in client.get("/webhooks/").content.decode()
    refused = client.post("/webhooks/add", {"url": "not a url"})
    assert refused.status_code == 302 and Webhook.objects.count() == 2
