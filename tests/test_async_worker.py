"""``async def`` tasks on a worker's event loop: many at once, up to
``--async-concurrency``, next to sync tasks on threads; time limits,
cancellation and SIGTERM end their coroutines, which may clean up.

Real worker processes and real signals; each coroutine records itself
through Django's async ORM, and the tests read those rows.
"""

from __future__ import annotations

import signal

import pytest

from background_task import status
from background_task.api.registry import Tasks
from background_task.core.exceptions import TaskCancelled, TaskTimeout
from background_task.models import CompletedTask, Task
from background_task.runtime.slots import TaskSlots
from background_task.runtime.worker import Worker
from tests.conftest import subprocess_env, wait_until
from tests.testapp import tasks as fixtures
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)


def _peak(rows: list[Execution]) -> int:
    """The most runs that were inside their awaits at one moment."""
    events = sorted(
        [(row.started_at, 1) for row in rows] + [(row.finished_at, -1) for row in rows],
        key=lambda event: (event[0], event[1]),  # an end before a start at the same instant
    )
    peak = running = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak


def _once(task: Task) -> Task:
    """The task, allowed a single attempt."""
    Task.objects.filter(pk=task.pk).update(max_attempts=1)
    return task


def _keys(prefix: str = "") -> set[str]:
    return {
        key for key in Execution.objects.values_list("key", flat=True) if key.startswith(prefix)
    }


def test_a_worker_awaits_many_at_once_and_never_more_than_its_limit(start_worker):
    for number in range(24):
        fixtures.async_overlap(f"k{number}", 0.4)
    code, output = start_worker("--burst", "--async-concurrency", "6").wait(120)
    assert code == 0, output
    rows = list(Execution.objects.filter(task_name="async_overlap"))
    assert len(rows) == 24
    peak = _peak(rows)
    # One process, one thread: only its event loop can run them at once.
    assert 2 <= peak <= 6, peak
    assert len({row.worker_pid for row in rows}) == 1
    assert CompletedTask.objects.filter(status=status.DONE).count() == 24


def test_sync_and_async_tasks_of_one_queue_both_run(start_worker):
    for number in range(5):
        fixtures.async_record(f"a{number}")
        fixtures.record(f"s{number}")
    code, output = start_worker("--burst", "--threads", "2").wait(120)
    assert code == 0, output
    assert _keys("a") == {f"a{n}" for n in range(5)}
    assert _keys("s") == {f"s{n}" for n in range(5)}
    assert not Task.objects.exists()


def test_a_long_sync_task_does_not_hold_back_the_loop(start_worker):
    """With one thread, a worker that runs coroutines moves its sync tasks to
    a thread of their own: the coroutines' outcomes are recorded, and their
    time limits lifted, while a sync task runs."""
    first = fixtures.async_record("first")
    worker = start_worker("--sleep", "0.1")
    wait_until(lambda: CompletedTask.objects.filter(task_id=first.task_id).exists())
    slow = fixtures.sleep_for(10, "sync")
    wait_until(lambda: "sync" in _keys())  # the sync task runs
    quick = [fixtures.async_overlap(f"q{n}", 0.2, timeout=1) for n in range(5)]
    wait_until(
        lambda: CompletedTask.objects.filter(task_id__in=[t.task_id for t in quick]).count() == 5,
        timeout=60,
    )
    # All five were recorded while the sync task still ran, none killed.
    assert Task.objects.filter(task_id=slow.task_id, status=status.RUNNING).exists()
    assert set(CompletedTask.objects.values_list("status", flat=True)) == {status.DONE}
    worker.signal(signal.SIGTERM)
    code, output = worker.wait(60)
    assert code == 0, output
    assert CompletedTask.objects.get(task_id=slow.task_id).status == status.DONE


def test_a_claim_takes_no_more_async_tasks_than_the_loop_has_room_for(clock):
    for number in range(10):
        fixtures.async_record(f"k{number}")
    worker = Worker(clock=clock, sleep=0.01, async_concurrency=3)
    assert worker.step() == 3
    assert worker.step() == 0  # the loop is full until those end
    worker.settle()
    assert worker.step() == 3
    worker.settle()


def test_a_worker_with_slots_needs_one_per_coroutine():
    with pytest.raises(ValueError, match="async_concurrency=5"):
        Worker(slots=TaskSlots(1, 2), async_concurrency=5)


def test_the_time_limit_cancels_the_coroutine_which_may_clean_up(start_worker):
    task = _once(fixtures.async_sleeper("slow", 60, timeout=1))
    fixtures.async_record("after")
    worker = start_worker("--sleep", "0.1")
    wait_until(lambda: CompletedTask.objects.filter(task_id=task.task_id).exists(), timeout=60)
    done = CompletedTask.objects.get(task_id=task.task_id)
    assert done.status == status.ERROR
    assert done.errors[-1]["exception_class_path"].endswith(TaskTimeout.__qualname__)
    assert "cleanup:slow" in _keys("cleanup")
    wait_until(lambda: "after" in _keys())
    worker.signal(signal.SIGTERM)
    code, output = worker.wait()
    assert code == 0, output
    # The loop cancelled it: its process was not killed.
    assert "killing" not in output.lower()


def test_cancel_stops_a_running_async_task(start_worker):
    task = fixtures.async_sleeper("cancel-me", 60)
    worker = start_worker("--sleep", "0.1")
    wait_until(lambda: "started:cancel-me" in _keys())
    assert task.cancel() is True
    wait_until(lambda: CompletedTask.objects.filter(task_id=task.task_id).exists(), timeout=30)
    done = CompletedTask.objects.get(task_id=task.task_id)
    assert done.status == status.CANCELLED
    assert TaskCancelled.__name__ in (done.last_error or "")
    assert "cleanup:cancel-me" in _keys()
    worker.signal(signal.SIGTERM)
    assert worker.wait()[0] == 0


def test_sigterm_lets_coroutines_finish_then_cancels_the_rest(start_worker):
    quick = fixtures.async_sleeper("quick", 1.5)
    slow = fixtures.async_sleeper("slow", 120)
    worker = start_worker("--sleep", "0.1", env=subprocess_env(BGTASK_SHUTDOWN_TIMEOUT="3"))
    wait_until(lambda: {"started:quick", "started:slow"} <= _keys())
    worker.signal(signal.SIGTERM)
    code, output = worker.wait(60)
    assert code == 0, output
    # The quick one finished within the grace period...
    assert CompletedTask.objects.get(task_id=quick.task_id).status == status.DONE
    assert "finished:quick" in _keys()
    # ...the slow one was cancelled, cleaned up, and waits to run again.
    assert "cleanup:slow" in _keys()
    row = Task.objects.get(task_id=slow.task_id)
    assert row.status == status.WAITING and row.attempts == 1
    assert "WorkerStopped" in (row.last_error or "")


def test_a_blocked_loop_is_killed_after_its_time_limit_and_grace(start_worker):
    task = _once(fixtures.async_blocking(60, timeout=1))
    worker = start_worker("--sleep", "0.1")
    wait_until(lambda: CompletedTask.objects.filter(task_id=task.task_id).exists(), timeout=60)
    done = CompletedTask.objects.get(task_id=task.task_id)
    assert done.status == status.ERROR
    assert "was killed" in (done.last_error or "")
    worker.kill()


def test_current_task_cancel_requested_reads_no_database_in_async_code(clock):
    task = fixtures.async_cancel_flag()
    worker = Worker(clock=clock, sleep=0.01)
    assert worker.step() == 1
    worker.settle()
    done = CompletedTask.objects.get(task_id=task.task_id)
    assert done.status == status.DONE and done.result is False


def test_a_failing_coroutine_is_retried_and_the_loop_goes_on(clock):
    registry = Tasks()

    @registry.background(name="async.flaky")
    async def flaky(value: int) -> int:
        if value < 0:
            raise ValueError("negative")
        return value

    bad, good = flaky(-1), flaky(5)
    worker = Worker(registry=registry, clock=clock, sleep=0.01)
    assert worker.step() == 2
    worker.settle()
    row = Task.objects.get(task_id=bad.task_id)
    assert row.attempts == 1 and "negative" in row.last_error
    assert not Task.objects.filter(task_id=good.task_id).exists()


def _sessions() -> int:
    """Other sessions open on the test database (PostgreSQL)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return int(cursor.fetchone()[0])


def test_coroutines_share_one_orm_connection_and_leave_none_open(start_worker):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("counts sessions in pg_stat_activity")
    for number in range(300):
        fixtures.async_record(f"c{number}")
    worker = start_worker("--sleep", "0.1", "--async-concurrency", "50")
    peak = 0

    def done() -> bool:
        nonlocal peak
        peak = max(peak, _sessions())
        return Execution.objects.count() == 300

    wait_until(done, timeout=120, interval=0.02)
    worker.signal(signal.SIGTERM)
    assert worker.wait()[0] == 0
    # The supervisor, the worker, its LISTEN and heartbeat connections and
    # the one the async ORM uses: not one per coroutine (50 ran at once).
    assert peak <= 6, peak
    wait_until(lambda: _sessions() == 0, timeout=10)
