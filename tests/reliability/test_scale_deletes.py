"""At scale: deleting a dataset of 100,000 registry objects through the admin, on PostgreSQL.

Statements are bound server-side, so one statement takes at most 65,535
parameters; a cascade that lists every object's id in one statement failed
(`bench/bench_gc.py`'s cleanup crashed on it).
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.utils import timezone

from publications.models import Dataset, ObjectState, PublicationEvent, StateObject

OBJECTS = 100_000
pytestmark = pytest.mark.django_db


def fill(dataset: Dataset) -> None:
    """100,000 registry rows (and a publication event for one in ten), inserted in bounded batches."""
    now = timezone.now()
    rows = []
    for n in range(OBJECTS):
        key = f"updates/2016-01-15/04-00-00-{n:09d}/readings_add_http:%2F%2Fe%2Fg.ttl"
        rows.append(StateObject.for_key(dataset, key, ObjectState.PUBLISHED, now, size=1))
    StateObject.objects.bulk_create(rows, batch_size=2000)
    objects = (
        StateObject.objects.filter(dataset=dataset).order_by("id").values_list("id", "key", "effective_ns")
    )
    events = [
        PublicationEvent(
            dataset=dataset,
            object_id=pk,
            key=key,
            source="readings",
            op="add",
            effective_ns=ns,
            s3_url=f"{dataset.s3root}/{key}",
        )
        for pk, key, ns in objects[::10]
    ]
    PublicationEvent.objects.bulk_create(events, batch_size=2000)


@pytest.mark.slow
def test_deleting_a_dataset_of_100000_objects_through_the_admin(tmp_path):
    assert connection.vendor == "postgresql"
    dataset = Dataset.objects.create(name="big", s3root=f"file://{tmp_path}")
    keep = Dataset.objects.create(name="kept", s3root=f"file://{tmp_path}-kept")
    fill(dataset)
    kept_row = StateObject.for_key(
        keep, "updates/2016-01-15/04-00-00-0/x_update.ru", ObjectState.PUBLISHED, timezone.now()
    )
    kept_row.save()
    admin = get_user_model().objects.create_superuser("root", password="x")
    client = Client()
    client.force_login(admin)
    response = client.post(f"/admin/publications/dataset/{dataset.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302, response.content[:500]
    assert not Dataset.objects.filter(pk=dataset.pk).exists()
    assert StateObject.objects.filter(dataset_id=dataset.pk).count() == 0
    assert PublicationEvent.objects.filter(dataset_id=dataset.pk).count() == 0
    assert list(StateObject.objects.values_list("key", flat=True)) == [kept_row.key]


def test_deleting_registry_objects_sets_their_publications_object_to_null():
    dataset = Dataset.objects.create(name="small", s3root="file:///tmp/none")
    obj = StateObject.for_key(
        dataset, "updates/2016-01-15/04-00-00-0/x_update.ru", ObjectState.PUBLISHED, timezone.now()
    )
    obj.save()
    event = PublicationEvent.objects.create(
        dataset=dataset,
        object=obj,
        key=obj.key,
        source="x",
        op="update",
        effective_ns=obj.effective_ns,
        s3_url="file:///tmp/none/x",
    )
    StateObject.objects.filter(pk=obj.pk).delete()
    event.refresh_from_db()
    assert event.object_id is None
