"""Registry rows for tests: published updates (and their publication events) without a store."""

from __future__ import annotations

from django.utils import timezone

from dmsupdate.state.keys import EffectiveTime, format_key
from publications.models import Dataset, ObjectState, PublicationEvent, StateObject


def register_update(
    dataset: Dataset,
    eff: EffectiveTime,
    graph: str,
    *,
    size: int = 120,
    actor: str = "publisher-bot",
    event: bool = True,
) -> StateObject:
    """A published `readings` add of `graph` at `eff` in the registry, with its publication event."""
    key = format_key(eff, "readings", "add", arg=graph, format="ttl")
    obj = StateObject.for_key(dataset, key, ObjectState.PUBLISHED, timezone.now(), size=size)
    obj.save()
    if event:
        PublicationEvent.objects.create(
            dataset=dataset,
            object=obj,
            key=key,
            source="readings",
            op="add",
            effective_ns=eff.nanos,
            actor=actor,
            s3_url=f"{dataset.s3root}/{key}",
            size=size,
        )
    return obj
