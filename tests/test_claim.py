"""The claim strategy of the current database: contract, concurrency, index use."""

import threading
from datetime import datetime, timedelta

import pytest
from django.db import connection, connections
from django.test import override_settings
from django.utils import timezone

from background_task import status
from background_task.claim import ClaimRequest, get_strategy
from background_task.claim.generic import GenericClaimStrategy
from background_task.models import Task
from background_task.registry import tasks
from tests.testapp import tasks as fixtures

pytestmark = pytest.mark.django_db(transaction=True)


def request(worker_id="w1", limit=10, names=None, queues=None, now=None):
    return ClaimRequest(
        worker_id,
        limit,
        now or timezone.now() + timedelta(seconds=1),
        names or tasks.names(),
        queues,
    )


@pytest.fixture(params=["vendor", "generic"])
def strategy(request):
    if request.param == "generic":
        return GenericClaimStrategy(connection)
    return get_strategy()


def test_strategy_matches_the_database():
    name = type(get_strategy()).__name__
    expected = {
        "postgresql": "PostgreSQLClaimStrategy",
        "mysql": "MySQLClaimStrategy",
        "sqlite": "SQLiteClaimStrategy",
    }[connection.vendor]
    assert name == expected


def test_claims_due_tasks_in_order_and_marks_them(strategy):
    low = fixtures.noop(priority=1)
    high = fixtures.noop(priority=8)
    fixtures.noop(schedule=3600)
    claimed = strategy.claim(request(limit=5))
    assert [t.pk for t in claimed] == [high.pk, low.pk]
    for task in claimed:
        assert task.status == status.RUNNING and task.locked_by == "w1"
        assert task.claim_token and task.locked_at and task.started_at
    assert strategy.claim(request(limit=5)) == []


def test_limit_names_and_queues(strategy):
    for _ in range(3):
        fixtures.noop()
    fixtures.record("x")  # queue "records"
    Task.objects.new_task("unknown.name").save()
    assert len(strategy.claim(request(limit=2, queues=[None]))) == 2
    assert [t.task_name for t in strategy.claim(request(queues=["records"]))] == [
        "tests.testapp.tasks.record"
    ]
    assert len(strategy.claim(request(names=["tests.testapp.tasks.noop"]))) == 1
    assert Task.objects.filter(task_name="unknown.name", status=status.WAITING).count() == 1
    assert strategy.claim(request(limit=0)) == []


def test_a_reused_strategy_claims_with_each_requests_time_and_worker(strategy):
    """Claim statements are compiled once per shape; time, worker and token vary per claim."""
    now = timezone.now()
    later = fixtures.noop(schedule=600)
    soon = fixtures.noop()
    first = strategy.claim(request(worker_id="w1", limit=5, now=now + timedelta(seconds=1)))
    assert [t.pk for t in first] == [soon.pk]
    assert first[0].locked_at == now + timedelta(seconds=1)
    second = strategy.claim(request(worker_id="w2", limit=5, now=now + timedelta(seconds=601)))
    assert [t.pk for t in second] == [later.pk]
    assert second[0].locked_by == "w2" and second[0].locked_at == now + timedelta(seconds=601)
    assert first[0].claim_token != second[0].claim_token


def test_claimed_tasks_read_back_as_the_orm_reads_them(strategy):
    fixtures.add(1, 2, verbose_name="check", priority=3, queue="q", schedule=0)
    (claimed,) = strategy.claim(request(queues=["q"]))
    stored = Task.objects.get(pk=claimed.pk)
    for field in Task._meta.concrete_fields:
        assert getattr(claimed, field.attname) == getattr(stored, field.attname), field.name
    assert claimed.params() == ([1, 2], {})
    assert not claimed._state.adding and claimed._state.db == "default"


@override_settings(USE_TZ=False)
def test_claims_with_naive_times_when_time_zones_are_off(strategy):
    task = Task.objects.new_task("tests.testapp.tasks.noop", [1])
    task.run_at = datetime.now()
    task.save()
    (claimed,) = strategy.claim(request(now=datetime.now() + timedelta(seconds=1)))
    assert claimed.pk == task.pk and claimed.locked_at.tzinfo is None


def test_concurrent_claims_never_overlap(strategy):
    total = 200
    Task.objects.bulk_create(
        [Task.objects.new_task("tests.testapp.tasks.noop", [i]) for i in range(total)]
    )
    results: dict[str, list[int]] = {}
    errors = []

    def claim_all(worker_id):
        own = type(strategy)(connections["default"])
        got: list[int] = []
        try:
            while True:
                batch = own.claim(request(worker_id=worker_id, limit=7))
                if not batch:
                    if not Task.objects.filter(status=status.WAITING).exists():
                        break
                    continue
                got.extend(t.pk for t in batch)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()
        results[worker_id] = got

    threads = [threading.Thread(target=claim_all, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    claimed = [pk for got in results.values() for pk in got]
    assert len(claimed) == total and len(set(claimed)) == total
    assert Task.objects.filter(status=status.RUNNING).count() == total


def test_claim_query_uses_the_claim_index():
    """With 20,000 queued rows the planner reads the (status, priority, run_at, id) index."""
    now = timezone.now()
    rows = [Task.objects.new_task("tests.testapp.tasks.noop", [i]) for i in range(20000)]
    for i, row in enumerate(rows):
        row.run_at = now - timedelta(seconds=i % 500) if i % 2 else now + timedelta(days=1)
    Task.objects.bulk_create(rows, batch_size=2000)
    with connection.cursor() as cursor:
        cursor.execute(
            {
                "postgresql": "ANALYZE background_task",
                "mysql": "ANALYZE TABLE background_task",
                "sqlite": "ANALYZE",
            }[connection.vendor]
        )
        if connection.vendor == "mysql":
            cursor.fetchall()
    strategy = get_strategy()
    query = strategy.candidates(request(limit=50, now=now)).values("id")[:50]
    plan = query.explain()
    assert "background_task_claim_desc" in plan, plan


def test_claim_statement_reads_claimed_rows_by_primary_key_without_statistics():
    """Without planner statistics (nobody ran ANALYZE) the UPDATE of a
    one-statement claim must still find its rows by primary key: a walk of
    the status index would cost every claim the whole queue."""
    strategy = get_strategy()
    if not hasattr(strategy, "statement"):
        pytest.skip("this database claims with an ORM UPDATE ... WHERE id IN (ids)")
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("DROP TABLE IF EXISTS sqlite_stat1")
    now = timezone.now()
    rows = [Task.objects.new_task("tests.testapp.tasks.noop", [i]) for i in range(20000)]
    for row in rows:
        row.run_at = now - timedelta(seconds=1)
    Task.objects.bulk_create(rows, batch_size=2000)
    claim = request(limit=50, now=now)
    statement = strategy.statement(claim)
    params = list(statement.params)
    for position in statement.now_positions:
        params[position] = strategy.adapt(now)
    params[statement.token_position] = "explain"
    params[statement.worker_position] = "w1"
    with connection.cursor() as cursor:
        prefix = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN "
        cursor.execute(prefix + statement.sql, params)
        plan = "\n".join(str(row[-1]) for row in cursor.fetchall())
    found_by_key = {
        "sqlite": "USING INTEGER PRIMARY KEY",
        "postgresql": "Index Scan using background_task_pkey",
    }[connection.vendor]
    assert found_by_key in plan, plan
    assert "background_task_claim_desc" in plan, plan
