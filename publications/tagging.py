"""Tagging a publication after the fact (seed 004's `repo tag`): its publisher's tags on it and its object."""

from __future__ import annotations

from django.db import transaction

from audit.services import record
from publications.models import PublicationEvent, StateObject
from publications.services import Publisher
from publications.tags import object_tags, parse_tags


def set_tags(event: PublicationEvent, tags: object, publisher: Publisher) -> PublicationEvent:
    """Replace the tags a publication's publisher gave (on it and its object); date tags stay.

    A publisher limited to labels may tag only publications with one of its labels.
    """
    given = parse_tags(tags)
    publisher.scope.check(event.dataset, event.source)
    with transaction.atomic():
        event = PublicationEvent.objects.select_for_update().select_related("dataset").get(pk=event.pk)
        before = event.given_tags
        event.tags = object_tags(event.effective_ns, given)
        PublicationEvent.objects.filter(pk=event.pk).update(tags=event.tags)
        if event.object_id is not None:
            obj = StateObject.objects.select_for_update().get(pk=event.object_id)
            kept = [t for t in obj.tags if t not in before]
            StateObject.objects.filter(pk=obj.pk).update(tags=object_tags(obj.effective_ns, [*kept, *given]))
        record(
            publisher.actor,
            "publication.tagged",
            event.dataset.name,
            {"publication": event.pk, "key": event.key, "before": before, "tags": given},
        )
    return event
