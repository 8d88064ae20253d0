"""Writing many model rows at once, faster than the ORM's `bulk_update`.

`QuerySet.bulk_update` builds one `CASE WHEN pk = … THEN …` expression per row and
field and resolves each in Python: a fleet job's batch of 1,000 servers spent
seconds there before any SQL ran. `update_rows` sends one small parametrised
UPDATE per row, all through one `executemany` (pipelined by psycopg on PostgreSQL;
in-process on SQLite), with each value prepared by its field as `save()` would.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection
from django.db.models import Model


def update_rows(objs: Sequence[Model], fields: Sequence[str]) -> None:
    """Write `fields` of each object to its row (matched by primary key); like `bulk_update`, no signals."""
    if not objs:
        return
    meta = type(objs[0])._meta
    columns = [meta.get_field(name) for name in fields]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in columns)
    sql = f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {quote(meta.pk.column)} = %s"
    rows = [
        [field.get_db_prep_save(getattr(obj, field.attname), connection) for field in columns] + [obj.pk]
        for obj in objs
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)
