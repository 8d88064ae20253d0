"""Tags on registry objects and publications (DESIGN §6): a `text[]` column with a GIN index on PostgreSQL.

Existing rows get the date tags of their effective time (hour, day, ISO week, month).
"""

from django.db import migrations

import publications.tags

DATE_TAGS_SQL = """
UPDATE {table} SET tags = ARRAY[
    'day:' || to_char(t, 'YYYY-MM-DD'),
    'hour:' || to_char(t, 'YYYY-MM-DD"T"HH24'),
    'month:' || to_char(t, 'YYYY-MM'),
    'week:' || to_char(t, 'IYYY-"W"IW')]
FROM (SELECT id AS row_id, to_timestamp({nanos} / 1e9) AT TIME ZONE 'UTC' AS t FROM {table}
      WHERE {nanos} IS NOT NULL) AS times
WHERE id = row_id
"""
INDEXES = [
    ("publications_stateobject", "object_tags_gin"),
    ("publications_publicationevent", "publication_tags_gin"),
]


def date_tags_and_indexes(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for table, nanos in (
            ("publications_stateobject", "effective_ns"),
            ("publications_publicationevent", "effective_ns"),
        ):
            schema_editor.execute(DATE_TAGS_SQL.format(table=table, nanos=nanos))
        for table, index in INDEXES:
            schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {index} ON {table} USING gin (tags)")
        return
    for name in ("StateObject", "PublicationEvent"):
        model = apps.get_model("publications", name)
        for row in model.objects.exclude(effective_ns=None).only("id", "effective_ns").iterator():
            model.objects.filter(pk=row.pk).update(tags=publications.tags.date_tags(row.effective_ns))


def drop_indexes(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for _table, index in INDEXES:
            schema_editor.execute(f"DROP INDEX IF EXISTS {index}")


class Migration(migrations.Migration):
    dependencies = [
        ("publications", "0008_fingerprints"),
    ]

    operations = [
        migrations.AddField(
            model_name="stateobject",
            name="tags",
            field=publications.tags.TagsField(),
        ),
        migrations.AddField(
            model_name="publicationevent",
            name="tags",
            field=publications.tags.TagsField(),
        ),
        migrations.RunPython(date_tags_and_indexes, drop_indexes),
    ]
