"""Create the database cache table that the per-token API throttle counts in.

`migrate` alone then yields a working API (the throttle needs the cache);
`createcachetable` is idempotent, so running it again later is harmless.
"""

from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor):
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0002_initial")]
    operations = [migrations.RunPython(create_cache_table, migrations.RunPython.noop)]
