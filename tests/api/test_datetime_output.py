"""API timestamps: dmsupdate.api_datetimes writes exactly what DRF's DateTimeField writes."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone as django_timezone
from rest_framework import serializers

from dmsupdate.api_datetimes import datetime_output

ZONES = ["UTC", "Europe/Amsterdam", "America/St_Johns", "Asia/Kathmandu", "Pacific/Chatham"]


def values(rng: random.Random) -> list:
    aware = []
    for _ in range(2000):
        when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(0, 9_000_000_000))
        when = when.replace(microsecond=rng.choice([0, rng.randrange(1, 1_000_000)]))
        offset = timezone(timedelta(minutes=rng.randrange(-12 * 60, 14 * 60)))
        aware.append(when.astimezone(rng.choice([UTC, offset, ZoneInfo(rng.choice(ZONES))])))
    edge = [
        None,
        datetime(2024, 3, 31, 1, 30, tzinfo=UTC),  # a DST change in Amsterdam
        datetime(2024, 10, 27, 0, 59, 59, 999999, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
    ]
    return aware + edge


@pytest.mark.parametrize("zone", ZONES)
def test_the_same_text_as_drf_in_every_time_zone(zone):
    rng = random.Random(zone)
    with django_timezone.override(ZoneInfo(zone)):
        field = serializers.DateTimeField(default_timezone=django_timezone.get_current_timezone())
        write = datetime_output({})
        for value in values(rng):
            try:
                expected = field.to_representation(value)
            except serializers.ValidationError:
                with pytest.raises(serializers.ValidationError):
                    write(value)
                continue
            assert write(value) == expected, value


def test_naive_values_and_strings_go_to_drf_itself():
    field = serializers.DateTimeField(default_timezone=django_timezone.get_current_timezone())
    write = datetime_output({})
    for value in [datetime(2024, 5, 1, 12, 0), "2024-05-01T12:00:00Z", ""]:
        assert write(value) == field.to_representation(value)


def test_one_writer_per_response():
    context: dict = {}
    assert datetime_output(context) is datetime_output(context)
    assert datetime_output({}) is not datetime_output(context)
