"""A running worker's upkeep: pruning that several workers share, and
PostgreSQL's VACUUM of the queue's tables (background_task.runtime.upkeep)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from background_task.models import CompletedTask, Task
from background_task.runtime import upkeep
from background_task.runtime.upkeep import Upkeep
from background_task.store.pruning import delete_in_batches, expired
from background_task.store.vacuum import TableStats, Vacuum, table_vacuum
from tests.conftest import Clock, subprocess_env, wait_until
from tests.testapp import tasks as fixtures

pytestmark = pytest.mark.django_db(transaction=True)


def finished(count: int, expires_at=None) -> list[int]:
    """``count`` history rows expiring at ``expires_at``; their ids."""
    now = timezone.now()
    rows = [
        CompletedTask(
            task_name="tests.testapp.tasks.noop",
            task_params="[[], {}]",
            task_hash="0" * 40,
            run_at=now,
            expires_at=expires_at,
        )
        for _ in range(count)
    ]
    CompletedTask.objects.bulk_create(rows)
    return sorted(CompletedTask.objects.values_list("pk", flat=True))


def test_pruners_of_several_workers_skip_the_rows_another_is_deleting():
    """With skip_locked, a pruner takes the rows no other transaction holds
    instead of waiting for them (here the wait would hit the lock timeout).

    (InnoDB deletes a list of ids that is a large part of a small table by
    reading, and locking, the whole table: there a pruner still waits for
    the other, a few milliseconds. Hence 3,000 rows, of which 500 go.)"""
    if not connection.features.has_select_for_update_skip_locked:
        pytest.skip("SQLite has one writer at a time: there is nothing to skip")
    past = timezone.now() - timedelta(seconds=1)
    ids = finished(3000, expires_at=past)
    held = ids[:100]  # the rows a first pruner's DELETE holds
    locked, release, done = threading.Event(), threading.Event(), threading.Event()

    def other_pruner() -> None:
        try:
            with transaction.atomic():
                list(CompletedTask.objects.select_for_update().filter(pk__in=held))
                locked.set()
                release.wait(30)
        finally:
            connections.close_all()
            done.set()

    threading.Thread(target=other_pruner, daemon=True).start()
    assert locked.wait(10)
    try:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SET lock_timeout = '3s'")
            else:
                cursor.execute("SET SESSION innodb_lock_wait_timeout = 3")
        deleted = delete_in_batches(
            expired(timezone.now()), batch=100, max_batches=5, skip_locked=True
        )
    finally:
        release.set()
        assert done.wait(10)
    assert deleted == 500
    assert sorted(CompletedTask.objects.values_list("pk", flat=True)) == held + ids[600:]


def test_a_pruner_with_nothing_expired_comes_back_when_the_first_row_expires():
    clock = Clock()
    chores = Upkeep(connection.alias, clock)
    assert chores._prune() == upkeep.IDLE_INTERVAL  # no history at all
    # A worker that finishes tasks looks again soon: rows may expire any time.
    assert chores._prune(active=True) == upkeep.PRUNE_AGAIN
    finished(3, expires_at=clock.now + timedelta(seconds=12))
    finished(1)  # no ttl: never expires
    assert chores._prune() == pytest.approx(12)
    clock.advance(11.5)
    assert chores._prune() == upkeep.PRUNE_AGAIN  # never sooner than that
    clock.advance(600)
    finished(1, expires_at=clock.now + timedelta(hours=1))
    assert chores._prune() == upkeep.PRUNE_AGAIN  # deleted the three: look again soon
    assert chores._prune() == upkeep.IDLE_INTERVAL  # an hour away: the idle pace
    assert CompletedTask.objects.count() == 2


def test_dead_rows_are_weighed_against_the_threshold_and_the_live_rows():
    assert TableStats("t", live=100, dead=10_000).needs_vacuum(10_000)
    assert not TableStats("t", live=100, dead=9_999).needs_vacuum(10_000)
    # A large history is vacuumed about as often as autovacuum would.
    assert not TableStats("t", live=1_000_000, dead=150_000).needs_vacuum(10_000)
    assert TableStats("t", live=1_000_000, dead=200_000).needs_vacuum(10_000)


def test_only_postgresql_is_vacuumed_and_a_threshold_of_none_turns_it_off():
    assert table_vacuum(None, None) is None
    vacuum = table_vacuum(None, 500)
    assert (vacuum is not None) == (connection.vendor == "postgresql")


def postgresql_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("InnoDB purges old row versions itself; SQLite reuses freed pages")


def dead_task_rows(count: int) -> None:
    """``count`` dead row versions in the task table, counted in the statistics."""
    fixtures.noop.bulk([() for _ in range(count)])
    Task.objects.all().delete()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
    # The statistics are flushed at the end of the next transaction.
    Task.objects.exists()


def vacuum_count(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT vacuum_count FROM pg_stat_user_tables WHERE relid = %s::regclass", [table]
        )
        return int(cursor.fetchone()[0])


def test_the_task_table_is_vacuumed_once_its_dead_rows_pass_the_threshold():
    postgresql_only()
    vacuum = Vacuum(connection.alias, threshold=500)
    before = vacuum_count("background_task")
    dead_task_rows(300)
    assert vacuum.run() == []
    dead_task_rows(300)
    stats = {stat.table: stat for stat in vacuum.stats()}
    assert stats["background_task"].dead >= 500
    assert vacuum.run() == ["background_task"]
    assert vacuum_count("background_task") == before + 1


def test_a_user_that_may_not_vacuum_leaves_it_to_autovacuum(caplog):
    postgresql_only()
    with connection.cursor() as cursor:
        cursor.execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bgtask_tenant') "
            "THEN CREATE ROLE bgtask_tenant; END IF; END $$"
        )
        cursor.execute("GRANT SELECT, DELETE ON background_task TO bgtask_tenant")
        cursor.execute("GRANT SELECT ON background_task_completedtask TO bgtask_tenant")
    dead_task_rows(600)
    vacuum = Vacuum(connection.alias, threshold=500)
    before = vacuum_count("background_task")
    with connection.cursor() as cursor:
        cursor.execute("SET ROLE bgtask_tenant")
    try:
        with caplog.at_level("INFO", logger="background_task.worker"):
            assert vacuum.run() == []
            assert vacuum.run() == []
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
    assert vacuum_count("background_task") == before
    said = [r.getMessage() for r in caplog.records if "may not VACUUM" in r.getMessage()]
    assert len(said) == 1, said


def test_a_running_worker_vacuums_the_task_table(start_worker):
    """A worker draining tasks VACUUMs the task table on its upkeep thread
    once the dead row versions its claims and deletes leave pass the setting."""
    postgresql_only()
    before = vacuum_count("background_task")
    fixtures.noop.bulk([() for _ in range(3000)])
    worker = start_worker("--sleep", "0.1", env=subprocess_env(BGTASK_VACUUM_AFTER="1000"))
    wait_until(lambda: not Task.objects.exists(), timeout=60)
    wait_until(lambda: vacuum_count("background_task") > before, timeout=30)
    worker.signal()
    code, output = worker.wait()
    assert code == 0, output
    assert CompletedTask.objects.count() == 3000


def test_the_dead_rows_are_looked_at_only_while_the_worker_finishes_tasks(monkeypatch):
    """A fleet of idle workers should cost the database nothing."""
    monkeypatch.setattr(upkeep, "VACUUM_CHECK_INTERVAL", 0.01)
    monkeypatch.setattr(upkeep, "ACTIVE_FOR", 0.05)
    looks: list[int] = []
    finished = [0]

    class Looking(Vacuum):
        def run(self) -> list[str]:
            looks.append(finished[0])
            return []

    chores = Upkeep(
        connection.alias,
        Clock(),
        vacuum=Looking(connection.alias, threshold=10),
        finished=lambda: finished[0],
    )
    chores.start()
    try:
        # Looks at start, and for ACTIVE_FOR after (here 0.05 s).
        wait_until(lambda: len(looks) >= 2, timeout=5)
        threading.Event().wait(0.3)
        idle = len(looks)
        threading.Event().wait(0.3)  # thirty intervals without a finished task
        assert len(looks) == idle and set(looks) == {0}
        finished[0] = 3
        wait_until(lambda: len(looks) > idle and looks[-1] == 3, timeout=5)
    finally:
        chores.stop(5)
