"""Prometheus /metrics shows each server's lag and the registry's figures."""

from __future__ import annotations

import pytest
from django.utils import timezone

from dmsupdate.state.keys import NANOS, EffectiveTime, format_key, parse_key
from publications.models import Dataset, ObjectState, StateObject
from servers.models import Server


@pytest.fixture
def fleet(db):
    dataset = Dataset.objects.create(name="flood", s3root="file:///tmp/none")
    now = timezone.now()
    base = EffectiveTime.parse("2024-01-01", "00-00-00-0").nanos
    for i in range(3):
        key = format_key(EffectiveTime(base + i * 60 * NANOS), "pub", "update", None, "ru")
        StateObject.objects.create(
            dataset=dataset,
            key=key,
            first_seen=now,
            last_seen=now,
            state=ObjectState.PUBLISHED,
            **StateObject.fields_from_key(parse_key(key)),
        )
    Server.objects.create(
        name="behind-1", dataset=dataset, effective_ns=base, last_report_at=now, last_succeeded=True
    )
    return dataset


def test_metrics_show_lag_and_pending_updates_per_server(client, fleet):
    response = client.get("/metrics")
    assert response.status_code == 200
    text = response.content.decode()
    assert 'dmsupdate_server_lag_seconds{dataset="flood",server="behind-1"} 120.0' in text
    assert 'dmsupdate_server_pending_updates{dataset="flood",server="behind-1"} 2.0' in text
    assert 'dmsupdate_server_state{dataset="flood",server="behind-1",state="behind"} 1.0' in text
    assert 'dmsupdate_objects{dataset="flood",state="published"} 3.0' in text


def test_metrics_token_is_required_when_configured(client, fleet, settings):
    settings.DMSUPDATE = {**settings.DMSUPDATE, "METRICS_TOKEN": "s3cret"}
    refused = client.get("/metrics")
    assert refused.status_code == 401
    assert refused.json()["error"] == "unauthenticated"
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200
