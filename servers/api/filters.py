"""Query-string filters of the server list: `?dataset=&enabled=`."""

from __future__ import annotations

import django_filters

from servers.models import Server


class ServerFilter(django_filters.FilterSet):
    """Servers of one dataset, enabled or not."""

    dataset = django_filters.CharFilter(field_name="dataset__name")
    enabled = django_filters.BooleanFilter()

    class Meta:
        model = Server
        fields = ["dataset", "enabled"]
