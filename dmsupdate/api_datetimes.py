"""Timestamps in API answers: DRF's DateTimeField output, written at list speed.

A list of ten thousand servers holds forty thousand timestamps; DRF's field spends
about 5 µs on each (settings and time zone looked up, then checked, per value). The
writer here is looked up once per response and gives the same text for every value
(ISO 8601 in the current time zone, `Z` for UTC; tests/api/test_datetime_output.py
compares the two), handing anything unusual (a naive value, a string, a format other
than ISO 8601, an overflow) to DRF's field itself.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.utils import timezone
from rest_framework import ISO_8601, serializers
from rest_framework.settings import api_settings


def datetime_output(context: dict[str, Any]) -> Callable[[datetime | None], str | None]:
    """The writer for this response (kept in the serializer `context`, made on first use)."""
    write = context.get("datetime_output")
    if write is None:
        write = context["datetime_output"] = _writer()
    return write


def _writer() -> Callable[[datetime | None], str | None]:
    zone = timezone.get_current_timezone()
    field = serializers.DateTimeField(default_timezone=zone)
    slow = field.to_representation
    output_format = getattr(field, "format", api_settings.DATETIME_FORMAT)
    if not isinstance(output_format, str) or output_format.lower() != ISO_8601:
        return slow

    def write(value: datetime | None) -> str | None:
        if not value:
            return None
        if not isinstance(value, datetime) or value.utcoffset() is None:
            return slow(value)
        try:
            text = value.astimezone(zone).isoformat()
        except OverflowError:
            return slow(value)
        return text[:-6] + "Z" if text.endswith("+00:00") else text

    return write
