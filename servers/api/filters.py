"""Query-string filters of the server list: `?dataset=&enabled=`."""

from __future__ import annotations

import django_filters

from servers.models import Server


class ServerFilter(django_filters.FilterSet):
    """Servers of one dataset, enabled or not."""

    dataset = django_filters.CharFilter(field_name="dataset__name")
    # Strict: `?enabled=maybe` is a 400, not a list of every server.
    enabled = django_filters.TypedChoiceFilter(
        choices=[("true", "true"), ("false", "false"), ("1", "1"), ("0", "0")],
        coerce=lambda value: value in ("true", "1"),
    )

    class Meta:
        model = Server
        fields = ["dataset", "enabled"]
