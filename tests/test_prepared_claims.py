"""Claim statements PREPAREd on the PostgreSQL session, and their fallbacks."""

import logging
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from background_task import status
from background_task.api.registry import tasks
from background_task.models import Task
from background_task.store.claim import ClaimRequest, get_strategy
from background_task.store.claim.prepared import MAX_MISSES, MAX_STATEMENTS, Prepared, numbered
from tests.testapp import tasks as fixtures  # noqa: F401  (registers the tasks claimed here)

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql"
    or bool(connection.settings_dict["OPTIONS"].get("server_side_binding")),
    reason="the worker prepares claims itself only on PostgreSQL without server-side binding",
)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL only")
def test_server_side_binding_leaves_preparing_to_the_driver():
    strategy = get_strategy()
    binding = bool(connection.settings_dict["OPTIONS"].get("server_side_binding"))
    assert strategy.prepared.enabled is not binding


def test_placeholders_are_numbered_and_percent_signs_unescaped():
    assert numbered("SELECT %s, '100%%' WHERE a = %s OR b = %s") == (
        "SELECT $1, '100%' WHERE a = $2 OR b = $3",
        3,
    )
    assert numbered("SELECT 1") == ("SELECT 1", 0)


def test_statement_names_follow_the_text():
    first, again = Prepared.of("SELECT %s"), Prepared.of("SELECT %s")
    other = Prepared.of("SELECT %s + 1")
    assert first == again and first.name != other.name
    assert first.prepare == f"PREPARE {first.name} AS SELECT $1"
    assert first.execute == f"EXECUTE {first.name}(%s)"
    assert len(first.name) < 64  # PostgreSQL's identifier limit


def _request(limit=10):
    return ClaimRequest("w1", limit, timezone.now() + timedelta(seconds=1), tasks.names())


def _queue(count):
    return Task.objects.bulk_create(
        [Task.objects.new_task("tests.testapp.tasks.noop", [i]) for i in range(count)]
    )


def _held_claims():
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements WHERE name LIKE 'bgtask_claim_%%'")
        return [row[0] for row in cursor.fetchall()]


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_claims_run_through_one_prepared_statement_per_session():
    rows = _queue(5)
    strategy = get_strategy()
    first = strategy.claim(_request(limit=2))
    second = strategy.claim(_request(limit=2))
    assert len(_held_claims()) == 1
    claimed = [task.pk for task in first + second]
    assert claimed == [row.pk for row in rows[:4]]
    assert all(task.status == status.RUNNING and task.locked_by == "w1" for task in first)
    # A second strategy on the same session finds the statement there already.
    assert [t.pk for t in get_strategy().claim(_request(limit=2))] == [rows[4].pk]
    assert len(_held_claims()) == 1


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_only_the_latest_statements_stay_prepared():
    """Each batch size is its own statement; a session keeps the latest few."""
    rows = _queue(60)
    strategy = get_strategy()
    claimed = []
    for limit in range(1, MAX_STATEMENTS + 4):
        claimed.extend(t.pk for t in strategy.claim(_request(limit=limit)))
    assert len(_held_claims()) == MAX_STATEMENTS
    assert claimed == [row.pk for row in rows[: len(claimed)]]


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_new_session_gets_the_statement_prepared_again():
    rows = _queue(2)
    strategy = get_strategy()
    assert [t.pk for t in strategy.claim(_request(limit=1))] == [rows[0].pk]
    connection.close()
    strategy.warm()  # what an idle worker does before it waits
    assert len(_held_claims()) == 1
    assert [t.pk for t in strategy.claim(_request(limit=1))] == [rows[1].pk]


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_session_that_lost_its_statements_still_claims_then_stops_preparing(caplog):
    """What a pooler in transaction mode looks like: the PREPARE ran on one
    server session, the EXECUTE runs on another that never saw it."""
    rows = _queue(MAX_MISSES + 2)
    strategy = get_strategy()
    claimed = [t.pk for t in strategy.claim(_request(limit=1))]
    names = set(_held_claims())
    with caplog.at_level(logging.INFO, logger="background_task.runtime.worker"):
        for _ in range(MAX_MISSES):
            with connection.cursor() as cursor:
                cursor.execute("DEALLOCATE ALL")
            strategy.prepared._held.update(names)  # as if the PREPARE had just run
            claimed.extend(t.pk for t in strategy.claim(_request(limit=1)))
    assert not strategy.prepared.enabled
    assert "claiming with plain statements" in caplog.text
    claimed.extend(t.pk for t in strategy.claim(_request()))
    assert claimed == [row.pk for row in rows]  # every miss still claimed, in order
    assert not _held_claims()


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_statement_that_cannot_be_prepared_runs_plain_and_preparing_stops(caplog):
    from django.db import ProgrammingError

    prepared = get_strategy().prepared
    with (
        caplog.at_level(logging.WARNING, logger="background_task.runtime.worker"),
        connection.cursor() as cursor,
        # The plain statement's own error is what the caller sees.
        pytest.raises(ProgrammingError, match="no_such_type"),
    ):
        prepared.fetchall(cursor, "SELECT %s::no_such_type", [1])
    assert not prepared.enabled
    assert "Cannot prepare the claim statement" in caplog.text
    assert not _held_claims()


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_claims_inside_a_transaction_block_are_not_prepared():
    rows = _queue(1)
    strategy = get_strategy()
    with transaction.atomic():
        assert [t.pk for t in strategy.claim(_request())] == [rows[0].pk]
        assert not _held_claims()


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_changed_table_drops_the_statement_and_claims_on():
    rows = _queue(3)
    strategy = get_strategy()
    assert [t.pk for t in strategy.claim(_request(limit=1))] == [rows[0].pk]
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE background_task ALTER COLUMN verbose_name TYPE text")
    try:
        # The RETURNING row changed type: PostgreSQL refuses the old statement.
        assert [t.pk for t in strategy.claim(_request(limit=1))] == [rows[1].pk]
        assert [t.pk for t in strategy.claim(_request(limit=1))] == [rows[2].pk]
        assert strategy.prepared.enabled and len(_held_claims()) == 1
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DEALLOCATE ALL")
            cursor.execute(
                "ALTER TABLE background_task ALTER COLUMN verbose_name TYPE varchar(255)"
            )


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_the_generic_plan_of_the_prepared_claim_uses_the_indexes():
    """After a few runs PostgreSQL may plan a prepared statement once for any
    parameters; that plan must also seek the claim index and the primary key."""
    now = timezone.now()
    rows = [Task.objects.new_task("tests.testapp.tasks.noop", [i]) for i in range(20000)]
    for i, row in enumerate(rows):
        row.run_at = now - timedelta(seconds=1) if i % 2 else now + timedelta(days=1)
    Task.objects.bulk_create(rows, batch_size=2000)
    strategy = get_strategy()
    request = ClaimRequest("w1", 50, now, tasks.names())
    strategy.claim(request)  # prepares it
    statement = strategy.statement(request)
    execute = Prepared.of(statement.sql).execute
    params = strategy.parameters(statement, now, "explain", "w1")
    with connection.cursor() as cursor:
        cursor.execute("SET plan_cache_mode = force_generic_plan")
        try:
            cursor.execute("EXPLAIN " + execute, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        finally:
            cursor.execute("RESET plan_cache_mode")
    assert "$" in plan  # generic: parameters, not values
    assert "background_task_pkey" in plan, plan
    assert "background_task_claim_desc" in plan, plan
