"""Query-string filters of the publication and registry lists (django-filter)."""

from __future__ import annotations

import django_filters
from django.db.models import QuerySet, Subquery

from dmsupdate.api import ApiError
from dmsupdate.errors import Invalid
from dmsupdate.state.keys import EffectiveTime, InvalidKey
from publications.models import Dataset, ObjectKind, ObjectState, PublicationEvent, StateObject
from publications.tags import filter_by_tags

TAG_HELP = "comma-separated tags (words, or hour:/day:/week:/month: date tags)"


def tagged(queryset: QuerySet, name: str, value: str) -> QuerySet:
    """`tags_any`, `tags_all`, `tags_exclude`: the GIN index on `tags` answers each (publications.tags)."""
    argument = {"tags_any": "any_of", "tags_all": "all_of", "tags_exclude": "exclude"}[name]
    try:
        return filter_by_tags(queryset, **{argument: value})
    except Invalid as exc:
        raise ApiError(exc.code, exc.detail) from exc


def effective_since(queryset: QuerySet, name: str, value: str) -> QuerySet:
    """Rows whose effective time is at or after `value` (ISO 8601 or `YYYY-MM-DD/hh-mm-ss-F`)."""
    try:
        nanos = EffectiveTime.parse_text(value).nanos
    except InvalidKey as exc:
        raise ApiError("invalid_filter", f"since: {exc}") from exc
    return queryset.filter(effective_ns__gte=nanos)


def registry_since(queryset: QuerySet, name: str, value: str) -> QuerySet:
    """`effective_since` on the registry, naming every kind and state so the lag index serves it.

    object_lag_idx is (dataset, kind, state, effective_ns): with kind and state given
    as lists PostgreSQL reads one effective-time range per pair instead of every
    entry of the dataset (a second index on (dataset, effective_ns) would cost every
    insert of sync_state and of publishing). Every row holds one of these values.
    """
    return effective_since(queryset, name, value).filter(
        kind__in=ObjectKind.values, state__in=ObjectState.values
    )


class PublicationFilter(django_filters.FilterSet):
    """`?dataset=&label=&op=&since=&tags_any=&tags_all=&tags_exclude=` on GET /api/v1/publications/."""

    dataset = django_filters.CharFilter(field_name="dataset__name")
    label = django_filters.CharFilter(field_name="source")
    op = django_filters.CharFilter()
    since = django_filters.CharFilter(method=effective_since, help_text="effective time, ISO 8601")
    tags_any = django_filters.CharFilter(method=tagged, help_text=f"any of: {TAG_HELP}")
    tags_all = django_filters.CharFilter(method=tagged, help_text=f"all of: {TAG_HELP}")
    tags_exclude = django_filters.CharFilter(method=tagged, help_text=f"none of: {TAG_HELP}")

    class Meta:
        model = PublicationEvent
        fields = ["dataset", "label", "op", "since", "tags_any", "tags_all", "tags_exclude"]


def in_dataset_named(queryset: QuerySet, name: str, value: str) -> QuerySet:
    """Rows of the dataset named `value`, compared on `dataset_id` (a subquery for the id, not a join).

    An equality on `dataset_id` lets the (dataset, key) index give the list's key
    order, so a page of a dataset of millions of objects reads about a page of rows.
    """
    return queryset.filter(dataset_id=Subquery(Dataset.objects.filter(name=value).values("pk")[:1]))


class StateObjectFilter(django_filters.FilterSet):
    """`?dataset=&kind=&state=&label=&since=&tags_*=` on GET /api/v1/objects/."""

    dataset = django_filters.CharFilter(method=in_dataset_named)
    kind = django_filters.ChoiceFilter(choices=ObjectKind.choices)
    state = django_filters.ChoiceFilter(choices=ObjectState.choices)
    label = django_filters.CharFilter()
    since = django_filters.CharFilter(method=registry_since, help_text="effective time, ISO 8601")
    tags_any = django_filters.CharFilter(method=tagged, help_text=f"any of: {TAG_HELP}")
    tags_all = django_filters.CharFilter(method=tagged, help_text=f"all of: {TAG_HELP}")
    tags_exclude = django_filters.CharFilter(method=tagged, help_text=f"none of: {TAG_HELP}")

    class Meta:
        model = StateObject
        fields = ["dataset", "kind", "state", "label", "since", "tags_any", "tags_all", "tags_exclude"]
