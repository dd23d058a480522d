from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from background_task.models import CompletedTask, Task


@pytest.mark.django_db
def test_no_missing_migrations():
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


def indexed_columns(table: str) -> list[tuple[str, ...]]:
    """The column lists of the table's indexes and unique constraints, but its primary key."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    return sorted(
        tuple(info["columns"])
        for info in constraints.values()
        if (info["index"] or info["unique"]) and not info["primary_key"]
    )


@pytest.mark.django_db
def test_each_index_of_the_task_tables_serves_a_query():
    # Every index costs every enqueue, claim and finished task; this list
    # changes only with a migration that says which query needs it.
    foreign_key = [("creator_content_type_id",)] if connection.vendor == "mysql" else []
    claim = ("status", "priority", "run_at", "id")
    assert indexed_columns(Task._meta.db_table) == sorted(
        [
            claim,
            claim,
            ("run_at",),
            ("task_hash",),
            ("task_id",),
            ("task_name",),
            ("unique_key",),
            *foreign_key,
        ]
    )
    assert indexed_columns(CompletedTask._meta.db_table) == sorted(
        [("expires_at",), ("failed_at",), ("run_at",), ("task_id",), ("task_name",), *foreign_key]
    )
