"""The claim strategy of the current database: contract, concurrency, index use."""

import dataclasses
import threading
from datetime import datetime, timedelta

import pytest
from django.db import connection, connections
from django.test import override_settings
from django.utils import timezone

from background_task import status
from background_task.api.registry import tasks
from background_task.models import Task
from background_task.store.claim import ClaimRequest, get_strategy
from background_task.store.claim.generic import GenericClaimStrategy
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
        value, expected = getattr(claimed, field.attname), getattr(stored, field.attname)
        assert value == expected, field.name
        if isinstance(expected, datetime):  # the very time zone object the ORM gives
            assert value.tzinfo is expected.tzinfo, field.name
    assert claimed.params() == ([1, 2], {})
    assert not claimed._state.adding and claimed._state.db == "default"


@override_settings(USE_TZ=False)
def test_claims_with_naive_times_when_time_zones_are_off(strategy):
    task = Task.objects.new_task("tests.testapp.tasks.noop", [1])
    task.run_at = datetime.now()
    task.save()
    (claimed,) = strategy.claim(request(now=datetime.now() + timedelta(seconds=1)))
    assert claimed.pk == task.pk and claimed.locked_at.tzinfo is None
    stored = Task.objects.get(pk=task.pk)
    assert (claimed.run_at, claimed.locked_at) == (stored.run_at, stored.locked_at)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's loaders")
@pytest.mark.parametrize("use_tz", [True, False])
def test_claimed_timestamps_are_parsed_by_psycopg_s_c_loader(use_tz):
    from background_task.store.claim.timestamps import TIMESTAMPTZ_OID, FastTimestamps

    connection.ensure_connection()
    if not hasattr(connection.connection, "adapters"):
        pytest.skip("psycopg2 parses timestamps in C already")
    import psycopg

    with override_settings(USE_TZ=use_tz):
        fast = FastTimestamps(connection)
        query = "SELECT TIMESTAMPTZ '2026-12-06 07:08:09.123456+00', NULL::timestamptz, 1"
        with connection.cursor() as cursor:
            cursor.execute(query)
            expected = list(cursor.fetchall())
        with connection.cursor() as cursor:
            assert fast.use(cursor) is (psycopg.pq.__impl__ != "python")
            cursor.execute(query)
            rows = fast.restore(cursor, list(cursor.fetchall()))
            loader = cursor.cursor.adapters.get_loader(TIMESTAMPTZ_OID, psycopg.pq.Format.TEXT)
    if psycopg.pq.__impl__ != "python":
        assert loader.__module__.startswith(("psycopg_binary", "psycopg_c")), loader
    assert [tuple(row) for row in rows] == [tuple(row) for row in expected]
    assert rows[0][0].tzinfo is expected[0][0].tzinfo  # UTC, or None without USE_TZ


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
    params = strategy.parameters(statement, now, "explain", "w1")
    with connection.cursor() as cursor:
        prefix = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN "
        cursor.execute(prefix + statement.sql, params)
        plan = "\n".join(str(row[-1]) for row in cursor.fetchall())
    found_by_key = {
        "sqlite": "USING INTEGER PRIMARY KEY",
        "postgresql": "background_task_pkey",
    }[connection.vendor]
    assert found_by_key in plan, plan
    assert "background_task_claim_desc" in plan, plan


def _random_queue(rnd, now, rounds_priorities):
    """Waiting and running tasks of random priority, time, name and queue."""
    rows = []
    for i in range(rnd.randint(0, 40)):
        row = Task.objects.new_task(
            rnd.choice(["tests.testapp.tasks.noop", "elsewhere.not_registered"]), [i]
        )
        row.priority = rnd.choice(rounds_priorities)
        row.run_at = now + timedelta(seconds=rnd.randint(-50, 50))
        row.queue = rnd.choice([None, None, "mail", "reports"])
        if rnd.random() < 0.15:
            row.status, row.locked_by = status.RUNNING, "other-worker"
        rows.append(row)
    return Task.objects.bulk_create(rows)


def _expected(rows, claim, descending):
    sign = -1 if descending else 1
    eligible = [
        row
        for row in rows
        if row.status == status.WAITING
        and row.run_at <= claim.now
        and row.task_name in claim.names
        and (claim.queues is None or row.queue in claim.queues)
    ]
    eligible.sort(key=lambda row: (sign * row.priority, row.run_at, row.pk))
    return [row.pk for row in eligible[: claim.limit]]


@pytest.mark.parametrize("ordering", ["DESC", "ASC"])
@pytest.mark.parametrize("max_steps", [None, 2])
def test_claims_the_best_due_tasks_of_any_mix(strategy, ordering, max_steps, monkeypatch):
    """Random queues of several priorities, due and future, claimable or
    not: each claim takes exactly the first ``limit`` claimable tasks in
    claim order. With ``max_steps=2`` the priority walk is cut short and
    the rest of the claim comes from the plain walk over lower priorities."""
    import random

    from background_task.store.claim import bands

    if max_steps is not None:
        monkeypatch.setattr(bands, "MAX_STEPS", max_steps)
    rnd = random.Random(f"{ordering}-{max_steps}-{type(strategy).__name__}")
    now = timezone.now()
    with override_settings(BACKGROUND_TASK_PRIORITY_ORDERING=ordering):
        for _ in range(12):
            Task.objects.all().delete()
            priorities = rnd.sample(range(-4, 8), rnd.randint(1, 6))
            rows = _random_queue(rnd, now, priorities)
            claim = ClaimRequest(
                "w1",
                rnd.randint(1, 12),
                now,
                ["tests.testapp.tasks.noop"],
                rnd.choice([None, ["mail", None], ["reports"]]),
            )
            expected = _expected(rows, claim, ordering == "DESC")
            assert [task.pk for task in strategy.claim(claim)] == expected


class _RowsRead:
    """Work the database does for the statements run inside the block:
    SQLite virtual machine steps, InnoDB handler reads, or PostgreSQL
    table and index pages fetched. A count, not a time."""

    def __enter__(self):
        self.count = 0
        vendor = connection.vendor
        if vendor == "sqlite":
            connection.ensure_connection()
            connection.connection.set_progress_handler(self._step, 20)
        else:
            self._before = self._read()
        return self

    def _step(self):
        self.count += 1
        return 0

    def _read(self):
        with connection.cursor() as cursor:
            if connection.vendor == "mysql":
                cursor.execute("SHOW SESSION STATUS LIKE 'Handler_read%%'")
                return sum(int(value) for _, value in cursor.fetchall())
            # Pages, not tuples: an index scan does not count the entries
            # its index conditions skip, but it does read their pages.
            cursor.execute(
                "SELECT COALESCE(SUM(pg_stat_get_xact_blocks_fetched(indexrelid)), 0)"
                " + pg_stat_get_xact_blocks_fetched('background_task'::regclass)"
                " FROM pg_index WHERE indrelid = 'background_task'::regclass"
            )
            return int(cursor.fetchone()[0])

    def __exit__(self, *exc):
        if connection.vendor == "sqlite":
            connection.connection.set_progress_handler(None, 0)
        else:
            self.count = self._read() - self._before


def _schedule(start, count, offset):
    """Queue tasks ``offset`` .. ``offset + count - 1``, one a second from
    ``start`` on, alternately at priorities 0 and 5."""
    rows = []
    for i in range(count):
        row = Task.objects.new_task("tests.testapp.tasks.noop", [offset + i])
        row.run_at = start + timedelta(seconds=offset + i)
        row.priority = 5 if i % 2 else 0
        rows.append(row)
    Task.objects.bulk_create(rows, batch_size=2000)


@pytest.mark.parametrize("due_count", [3, 300])
def test_tasks_due_later_are_not_read_by_the_claim(due_count):
    """Due tasks under a large schedule of later ones, half of them of a
    higher priority: the claim's work must not grow with the schedule.
    Before the priority walk it grew 16-fold with a trickle of due tasks on
    SQLite, and with a backlog of due tasks on every database."""
    from django.db import transaction

    strategy = get_strategy()
    now = timezone.now()
    tomorrow = now + timedelta(days=1)
    due = [Task.objects.new_task("tests.testapp.tasks.noop", [-i]) for i in range(due_count)]
    for row in due:
        row.run_at = now - timedelta(seconds=5)
    Task.objects.bulk_create(due)

    def work():
        claim = request(limit=10, now=now)
        strategy.claim(dataclasses.replace(claim, now=now - timedelta(days=1)))  # compile
        with transaction.atomic():
            with _RowsRead() as reads:
                claimed = strategy.claim(claim)
            transaction.set_rollback(True)
        assert len(claimed) == min(due_count, 10)
        return reads.count

    _schedule(tomorrow, 500, 0)
    small = work()
    _schedule(tomorrow, 10000, 500)
    large = work()
    assert large <= small * 1.5 + 50, (small, large)


@pytest.mark.parametrize("ordering", ["DESC", "ASC"])
def test_next_run_at_is_the_earliest_later_waiting_task(ordering):
    """Whatever the priority, name or queue; due and running tasks do not
    count. An idle worker sleeps until then."""
    strategy = get_strategy()
    now = timezone.now().replace(microsecond=250000)
    with override_settings(BACKGROUND_TASK_PRIORITY_ORDERING=ordering):
        assert strategy.next_run_at(now) is None
        rows = []
        for priority, seconds, state in [
            (5, 300, status.WAITING),
            (0, -20, status.WAITING),  # due already
            (-3, 40, status.WAITING),  # the earliest later one
            (9, 10, status.RUNNING),
            (0, 90, status.WAITING),
        ]:
            row = Task.objects.new_task("elsewhere.not_registered", [seconds])
            row.priority, row.status = priority, state
            row.run_at = now + timedelta(seconds=seconds)
            rows.append(row)
        Task.objects.bulk_create(rows)
        assert strategy.next_run_at(now) == now + timedelta(seconds=40)
        assert strategy.next_run_at(now + timedelta(seconds=40)) == now + timedelta(seconds=90)
        assert strategy.next_run_at(now + timedelta(seconds=300)) is None


def test_next_run_at_reads_one_entry_per_priority():
    """10,000 more tasks due later must not make the lookup read more."""
    strategy = get_strategy()
    now = timezone.now()

    def work():
        strategy.next_run_at(now)  # compile
        with _RowsRead() as reads:
            assert strategy.next_run_at(now) == now + timedelta(minutes=1)
        return reads.count

    _schedule(now + timedelta(minutes=1), 500, 0)
    small = work()
    _schedule(now + timedelta(minutes=1), 10000, 500)
    large = work()
    assert large <= small * 1.5 + 50, (small, large)
