"""Range reads of the registry are planned for their values on PostgreSQL (dmsupdate.postgres.planned_for_values).

Statements are prepared after a few uses; PostgreSQL would then switch one to a generic
plan, which for `since=` over a million objects took 1.7-4 s instead of 30 ms.
"""

from __future__ import annotations

import pytest
from django.db import connection

from dmsupdate.postgres import planned_for_values

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's plan cache")

QUERY = "SELECT count(*) FROM publications_stateobject WHERE effective_ns >= %s AND dataset_id = %s"


def plans(like: str) -> tuple[int, int]:
    """Generic and custom plans made so far for this connection's prepared statements matching `like`."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT coalesce(sum(generic_plans), 0), coalesce(sum(custom_plans), 0)"
            " FROM pg_prepared_statements WHERE statement LIKE %s",
            [like],
        )
        return cur.fetchone()


@pytest.mark.django_db
def test_a_statement_repeated_in_planned_for_values_never_gets_a_generic_plan():
    for i in range(12):  # prepared after 5 runs; PostgreSQL would go generic after 5 more
        with planned_for_values(), connection.cursor() as cur:
            cur.execute(QUERY, [i, 1])
    generic, custom = plans("%effective_ns >= $1 AND dataset_id = $2")
    assert custom >= 6 and generic == 0


@pytest.mark.django_db
def test_the_same_statement_elsewhere_does_get_a_generic_plan():
    """What the check above guards against: it can fail."""
    with connection.cursor() as cur:
        for i in range(12):
            cur.execute(QUERY + " AND size >= 0", [i, 1])
    generic, _custom = plans("%size >= 0%")
    assert generic > 0


@pytest.mark.django_db
def test_the_objects_list_is_planned_for_its_values(viewer, dataset):
    for _ in range(12):
        answer = viewer.client.get(f"/api/v1/objects/?dataset={dataset.name}&since=2024-01-01T00:00:00Z")
        assert answer.status_code == 200
    for query in (
        '%FROM "publications_stateobject"%LIMIT 101',
        '%FROM "publications_stateobject"%LIMIT 10001)%',
    ):
        generic, custom = plans(query)  # the page, and its bounded count
        assert custom >= 6 and generic == 0
