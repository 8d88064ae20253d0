"""Query-string filters of the audit log: `?actor=&action=&target=&since=&until=`."""

from __future__ import annotations

import django_filters

from audit.models import AuditEvent


class AuditEventFilter(django_filters.FilterSet):
    """Actor and target match a substring; action matches exactly or as a dotted prefix (`job.`)."""

    actor = django_filters.CharFilter(lookup_expr="icontains")
    action = django_filters.CharFilter(method="filter_action")
    target = django_filters.CharFilter(lookup_expr="icontains")
    request_id = django_filters.CharFilter()
    since = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["actor", "action", "target", "request_id", "since", "until"]

    def filter_action(self, queryset, name: str, value: str):
        if value.endswith("."):
            return queryset.filter(action__startswith=value)
        return queryset.filter(action=value)
