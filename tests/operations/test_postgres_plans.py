"""Prepared statements on PostgreSQL are planned for their parameters' values (dmsupdate.postgres)."""

from __future__ import annotations

import pytest
from django.db import connection

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's plan cache")

QUERY = "SELECT count(*) FROM publications_stateobject WHERE effective_ns >= %s AND dataset_id = %s"


def plans_of(text: str) -> tuple[int, int]:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT coalesce(sum(generic_plans), 0), coalesce(sum(custom_plans), 0)"
            " FROM pg_prepared_statements WHERE statement = %s",
            [text],
        )
        return cur.fetchone()


@pytest.mark.django_db
def test_a_statement_run_often_is_prepared_but_never_given_a_generic_plan():
    connection.ensure_connection()
    with connection.cursor() as cur:
        cur.execute("SHOW plan_cache_mode")
        assert cur.fetchone()[0] == "force_custom_plan"
        for i in range(12):  # prepared after 5 runs; PostgreSQL would go generic after 5 more
            cur.execute(QUERY, [i, 1])
    with connection.cursor() as cur:
        cur.execute(
            "SELECT statement FROM pg_prepared_statements WHERE statement LIKE %s", ["%effective_ns >= $1%"]
        )
        (statement,) = [row[0] for row in cur.fetchall()]
    generic, custom = plans_of(statement)
    assert custom >= 6 and generic == 0


@pytest.mark.django_db
def test_without_the_setting_postgresql_would_switch_to_a_generic_plan():
    """The check above can fail: the same statements in auto mode get generic plans."""
    connection.ensure_connection()
    with connection.cursor() as cur:
        cur.execute("SET plan_cache_mode = auto")
        try:
            for i in range(12):
                cur.execute(QUERY + " AND size >= 0", [i, 1])
        finally:
            cur.execute("SET plan_cache_mode = force_custom_plan")
    with connection.cursor() as cur:
        cur.execute("SELECT statement FROM pg_prepared_statements WHERE statement LIKE %s", ["%size >= 0%"])
        (statement,) = [row[0] for row in cur.fetchall()]
    generic, _custom = plans_of(statement)
    assert generic > 0
