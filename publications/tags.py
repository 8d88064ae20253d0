"""Tags of publications and registry objects (DESIGN §6, seed 004).

A tag is a word `[a-z0-9][a-z0-9._-]{0,63}` a publisher gives, or a date tag of
the object's effective time: `hour:2026-12-01T09`, `day:2026-12-01`,
`week:2026-W49` (ISO week and its year), `month:2026-12`. Every object carries
its date tags; its publication's tags are added to them.

The column is a PostgreSQL `text[]` with a GIN index (migration 0009), which the
planner uses for `@>` (all of), `&&` (any of) and their negation. Under SQLite (the
demo) the same field holds a JSON list and the lookups read it with json_each.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache

from django import forms
from django.db import models
from django.db.models import Lookup

from dmsupdate.errors import Invalid

TAG = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
DATE_TAG = re.compile(r"hour:\d{4}-\d\d-\d\dT\d\d|day:\d{4}-\d\d-\d\d|week:\d{4}-W\d\d|month:\d{4}-\d\d")
MAX_TAGS = 32
HOUR_NS = 3600 * 10**9


def date_tags(nanos: int | None) -> list[str]:
    """The hour, day, ISO week and month tags of an effective time (nanoseconds since the epoch, UTC), sorted."""
    if nanos is None:
        return []
    return list(_hour_tags(nanos // HOUR_NS))


@lru_cache(maxsize=4096)
def _hour_tags(hour: int) -> tuple[str, ...]:
    at = datetime.fromtimestamp(hour * 3600, UTC)
    year, week, _ = at.isocalendar()
    return (
        f"day:{at:%Y-%m-%d}",
        f"hour:{at:%Y-%m-%dT%H}",
        f"month:{at:%Y-%m}",
        f"week:{year:04d}-W{week:02d}",
    )


def is_date_tag(tag: str) -> bool:
    return ":" in tag


def parse_tags(value: object, name: str = "tags") -> list[str]:
    """A publisher's tags from a form or query string (comma-separated) or JSON (a list); Invalid when wrong.

    Sorted and without duplicates. Date tags are the registry's own and cannot be given.
    """
    if value is None or value == "":
        return []
    if isinstance(value, str):
        items: list = [t.strip() for t in value.split(",") if t.strip()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise Invalid("invalid_tags", f"{name} must be a list of words or a comma-separated string")
    wrong = [t for t in items if not isinstance(t, str) or not TAG.fullmatch(t)]
    if wrong:
        raise Invalid(
            "invalid_tags",
            f"{name}: {json.dumps(wrong[0])} is not a tag (lower-case [a-z0-9][a-z0-9._-]{{0,63}})",
        )
    tags = sorted(set(items))
    if len(tags) > MAX_TAGS:
        raise Invalid("invalid_tags", f"{name}: at most {MAX_TAGS} tags")
    return tags


def parse_filter(value: str, name: str) -> list[str]:
    """The tags of a `tags_any`/`tags_all`/`tags_exclude` filter: words and date tags; Invalid when wrong."""
    items = sorted({t.strip() for t in value.split(",") if t.strip()})
    wrong = [t for t in items if not (TAG.fullmatch(t) or DATE_TAG.fullmatch(t))]
    if wrong:
        raise Invalid("invalid_filter", f"{name}: {json.dumps(wrong[0])} is not a tag")
    if len(items) > MAX_TAGS:
        raise Invalid("invalid_filter", f"{name}: at most {MAX_TAGS} tags")
    return items


def object_tags(nanos: int | None, given: Iterable[str]) -> list[str]:
    """An object's tags: its date tags and the tags its publication gave."""
    return sorted(set(date_tags(nanos)) | {t for t in given if not is_date_tag(t)})


class TagsFormField(forms.CharField):
    """Tags in a form (the admin): comma-separated words."""

    def prepare_value(self, value):
        return ", ".join(value) if isinstance(value, list | tuple) else value

    def to_python(self, value):
        text = super().to_python(value)
        parts = [t.strip() for t in text.split(",") if t.strip()]
        wrong = [t for t in parts if not (TAG.fullmatch(t) or DATE_TAG.fullmatch(t))]
        if wrong:
            raise forms.ValidationError(f"{wrong[0]!r} is not a tag")
        return sorted(set(parts))


class TagsField(models.Field):
    """A list of tags: `text[]` on PostgreSQL, a JSON list in a text column elsewhere."""

    description = "tags"

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("default", list)
        kwargs.setdefault("blank", True)
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        if kwargs.get("default") is list:
            del kwargs["default"]
        if kwargs.get("blank") is True:
            del kwargs["blank"]
        return name, path, args, kwargs

    def db_type(self, connection) -> str:
        return "text[]" if connection.vendor == "postgresql" else "text"

    def get_internal_type(self) -> str:
        return "TagsField"

    def from_db_value(self, value, expression, connection):
        if value is None or isinstance(value, list):
            return value
        return json.loads(value)

    def to_python(self, value):
        if isinstance(value, str):
            return json.loads(value) if value.startswith("[") else [t for t in value.split(",") if t]
        return list(value) if value is not None else []

    def get_db_prep_value(self, value, connection, prepared=False):
        if value is None:
            return None
        tags = list(value)
        return tags if connection.vendor == "postgresql" else json.dumps(tags)

    def value_to_string(self, obj) -> str:
        return json.dumps(self.value_from_object(obj))

    def formfield(self, **kwargs):
        return super().formfield(**{"form_class": TagsFormField, "required": False, **kwargs})


class _TagsLookup(Lookup):
    """`field__<name>=[tags]`, with an empty list matching nothing for `any` and everything for `all`."""

    pg_operator = ""

    def get_db_prep_lookup(self, value, connection):
        return ("%s", [self.lhs.output_field.get_db_prep_value(sorted(set(value)), connection)])

    def as_postgresql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} {self.pg_operator} ({rhs})::text[]", [*lhs_params, *rhs_params]


@TagsField.register_lookup
class HasAllTags(_TagsLookup):
    lookup_name = "has_all"
    pg_operator = "@>"

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return (
            f"(SELECT COUNT(DISTINCT t.value) FROM json_each({lhs}) t"
            f" WHERE t.value IN (SELECT value FROM json_each({rhs}))) = json_array_length({rhs})",
            [*lhs_params, *rhs_params, *rhs_params],
        )


@TagsField.register_lookup
class HasAnyTag(_TagsLookup):
    lookup_name = "has_any"
    pg_operator = "&&"

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return (
            f"EXISTS (SELECT 1 FROM json_each({lhs}) t WHERE t.value IN (SELECT value FROM json_each({rhs})))",
            [*lhs_params, *rhs_params],
        )


def filter_by_tags(rows: models.QuerySet, any_of: str = "", all_of: str = "", exclude: str = ""):
    """Rows with any of, all of, and none of the comma-separated tags (each filter optional)."""
    any_tags, all_tags = parse_filter(any_of, "tags_any"), parse_filter(all_of, "tags_all")
    excluded = parse_filter(exclude, "tags_exclude")
    if any_tags:
        rows = rows.filter(tags__has_any=any_tags)
    if all_tags:
        rows = rows.filter(tags__has_all=all_tags)
    if excluded:
        rows = rows.exclude(tags__has_any=excluded)
    return rows
