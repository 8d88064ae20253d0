"""Throttle budgets in their own table, UNLOGGED on PostgreSQL (no WAL, so no disk wait per request)."""

from django.db import migrations, models


def unlogged(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE accounts_throttlebucket SET UNLOGGED")


class Migration(migrations.Migration):
    dependencies = [("accounts", "0003_throttle_cache_table")]

    operations = [
        migrations.CreateModel(
            name="ThrottleBucket",
            fields=[
                ("ident", models.CharField(max_length=100, primary_key=True, serialize=False)),
                ("spent_until", models.FloatField()),
            ],
        ),
        migrations.RunPython(unlogged, migrations.RunPython.noop),
    ]
