"""Query-string filters of the publication and registry lists (django-filter)."""

from __future__ import annotations

import django_filters
from django.db.models import QuerySet

from dmsupdate.api import ApiError
from dmsupdate.state.keys import EffectiveTime, InvalidKey
from publications.models import ObjectKind, ObjectState, PublicationEvent, StateObject


def effective_since(queryset: QuerySet, name: str, value: str) -> QuerySet:
    """Rows whose effective time is at or after `value` (ISO 8601 or `YYYY-MM-DD/hh-mm-ss-F`)."""
    try:
        nanos = EffectiveTime.parse_text(value).nanos
    except InvalidKey as exc:
        raise ApiError("invalid_filter", f"since: {exc}") from exc
    return queryset.filter(effective_ns__gte=nanos)


class PublicationFilter(django_filters.FilterSet):
    """`?dataset=&label=&op=&since=` on GET /api/v1/publications/."""

    dataset = django_filters.CharFilter(field_name="dataset__name")
    label = django_filters.CharFilter(field_name="source")
    op = django_filters.CharFilter()
    since = django_filters.CharFilter(method=effective_since, help_text="effective time, ISO 8601")

    class Meta:
        model = PublicationEvent
        fields = ["dataset", "label", "op", "since"]


class StateObjectFilter(django_filters.FilterSet):
    """`?dataset=&kind=&state=&label=&since=` on GET /api/v1/objects/."""

    dataset = django_filters.CharFilter(field_name="dataset__name")
    kind = django_filters.ChoiceFilter(choices=ObjectKind.choices)
    state = django_filters.ChoiceFilter(choices=ObjectState.choices)
    label = django_filters.CharFilter()
    since = django_filters.CharFilter(method=effective_since, help_text="effective time, ISO 8601")

    class Meta:
        model = StateObject
        fields = ["dataset", "kind", "state", "label", "since"]
