"""Paging of the object registry list: exact counts while they are cheap, `null` past a bound.

A registry holds millions of keys; an exact COUNT(*) of a wide filter (every
update of a dataset) reads every matching row on each page request, seconds at
10,000,000 objects (bench_fleet_scale). Here the count stops at COUNT_LIMIT rows:
up to that the answer's `count` is exact; beyond it `count` is null and
`count_more_than` says so. `next` is present whenever another row follows the
page (one row past the page is read to know), so clients page to the end
either way.
"""

from __future__ import annotations

from typing import Any

from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

COUNT_LIMIT = 10_000


class BoundedCountPagination(LimitOffsetPagination):
    """`?limit=&offset=` like every list, with the count bounded (see the module)."""

    count_limit = COUNT_LIMIT

    def paginate_queryset(self, queryset, request, view=None) -> list[Any] | None:
        self.request = request
        self.limit = self.get_limit(request)
        if self.limit is None:
            return None
        self.offset = self.get_offset(request)
        counted = queryset.order_by().values("pk")[: self.count_limit + 1].count()
        self.count = counted if counted <= self.count_limit else None
        if self.count is not None:
            queryset = self.few_rows(queryset, request)
        rows = list(queryset[self.offset : self.offset + self.limit + 1])
        self.has_next = len(rows) > self.limit
        return rows[: self.limit]

    def few_rows(self, queryset, request):
        """The page's query when at most `count_limit` rows match (a subclass may order them otherwise)."""
        return queryset

    def get_next_link(self) -> str | None:
        if not self.has_next:
            return None
        url = replace_query_param(self.request.build_absolute_uri(), self.limit_query_param, self.limit)
        return replace_query_param(url, self.offset_query_param, self.offset + self.limit)

    def get_paginated_response(self, data) -> Response:
        answer: dict[str, Any] = {"count": self.count}
        if self.count is None:
            answer["count_more_than"] = self.count_limit
        return Response(
            answer | {"next": self.get_next_link(), "previous": self.get_previous_link(), "results": data}
        )

    def get_paginated_response_schema(self, schema: dict) -> dict:
        answer = super().get_paginated_response_schema(schema)
        answer["properties"]["count"] = {
            "type": "integer",
            "nullable": True,
            "description": f"exact up to {self.count_limit:,}; null beyond (then see count_more_than)",
        }
        answer["properties"]["count_more_than"] = {"type": "integer", "example": self.count_limit}
        return answer
