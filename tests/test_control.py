"""Task handles: results, errors, wait, cancel, retry, Retry from inside, ttl and pruning,
enqueue by name and the seeds' spellings."""

from __future__ import annotations

import signal
import threading
import time
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connections
from django.test import override_settings

import background_task
from background_task import CANCELLED, DONE, ERROR, RUNNING, WAITING, status
from background_task.api.registry import Tasks
from background_task.core.schedules import TaskSchedule
from background_task.exceptions import TaskNotFound, TaskNotRegistered
from background_task.models import CompletedTask, Task
from background_task.store.pruning import parse_duration, prune_expired
from tests.conftest import drain, subprocess_env
from tests.testapp import tasks as fixtures
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)


# -- handles ------------------------------------------------------------------------


def test_a_queued_task_is_a_handle_that_follows_it_into_the_history(clock):
    task = fixtures.add(2, 3, schedule=0)
    assert (task.status, task.ready, task.result, task.error) == (WAITING, False, None, None)
    drain(clock)
    assert task.refresh() is task
    assert (task.status, task.ready, task.result, task.attempts) == (DONE, True, 5, 1)
    same = background_task.get_result(task.task_id)
    assert isinstance(same, CompletedTask) and same.result == 5


def test_the_error_of_the_last_failed_attempt(clock):
    task = fixtures.fail_invalid(schedule=0)
    drain(clock)
    task.refresh()
    assert task.status == ERROR and task.ready
    assert task.error["exception_class_path"] == "background_task.exceptions.InvalidTaskError"
    assert "Traceback" in task.error["traceback"] and task.error["attempt"] == 1


def test_an_unknown_task_id_is_not_found():
    with pytest.raises(TaskNotFound, match="no-such-id"):
        background_task.get_result("no-such-id")


def test_wait_returns_when_finished_and_times_out_otherwise(clock):
    task = fixtures.add(1, 1, schedule=0)
    with pytest.raises(TimeoutError, match=r"still waiting after 0\.2s"):
        task.wait(timeout=0.2)

    def finish() -> None:
        try:
            drain(clock)
        finally:
            connections.close_all()  # this thread's own connection

    finisher = threading.Timer(0.3, finish)
    finisher.start()
    try:
        assert task.wait(timeout=10).result == 2
    finally:
        finisher.join()
    with pytest.raises(ValueError, match="until must be"):
        task.wait(until="soon")


# -- cancel and retry -----------------------------------------------------------------


def test_a_waiting_task_cancelled_never_runs(clock):
    task = fixtures.record("never", schedule=0)
    assert task.cancel() is True
    assert task.status == CANCELLED
    drain(clock)
    assert not Execution.objects.exists()
    assert task.refresh().status == CANCELLED
    assert task.cancel() is False  # finished: nothing to do


def test_a_failed_or_cancelled_task_can_be_retried_under_the_same_id(clock):
    task = fixtures.record("again", schedule=0)
    task.cancel()
    requeued = task.retry()
    assert requeued.task_id == task.task_id and requeued.status == WAITING
    drain(clock)
    assert task.refresh().status == DONE
    with pytest.raises(ValueError, match="Only failed or cancelled tasks"):
        task.retry()


def test_a_running_task_sees_its_cancellation_and_stops(start_worker):
    task = fixtures.until_cancelled("co-op")
    worker = start_worker("--sleep", "0.1", env=subprocess_env(BGTASK_SHUTDOWN_TIMEOUT="2"))
    task.wait(timeout=20, until="started")
    assert task.status == RUNNING
    assert task.cancel() is True
    assert task.wait(timeout=10).status == CANCELLED
    assert "asked to stop" in CompletedTask.objects.get(task_id=task.task_id).last_error
    worker.signal(signal.SIGTERM)
    assert worker.wait()[0] == 0


def test_cancel_with_force_kills_the_process_running_it(start_worker):
    task = fixtures.sleep_for(60, key="stubborn")
    other = fixtures.record("survivor", schedule=5)
    worker = start_worker("--sleep", "0.1", env=subprocess_env(BGTASK_SHUTDOWN_TIMEOUT="2"))
    task.wait(timeout=20, until="started")
    began = time.monotonic()
    assert task.cancel(force=True) is True
    assert task.wait(timeout=10).status == CANCELLED
    assert time.monotonic() - began < 15  # the supervisor looks every second
    assert "with force=True" in CompletedTask.objects.get(task_id=task.task_id).last_error
    other.wait(timeout=20)  # the replacement process runs the rest
    worker.signal(signal.SIGTERM)
    code, output = worker.wait()
    assert code == 0, output


# -- Retry from inside -------------------------------------------------------------------


def test_a_task_asks_for_another_attempt_with_its_own_delay(clock):
    task = fixtures.asks_retry(delay=120, schedule=0)
    drain(clock)
    row = Task.objects.get(pk=task.pk)
    assert row.attempts == 1 and row.run_at == clock.now + timedelta(seconds=120)
    assert row.errors[0]["message"] == "not ready yet"


def test_retry_without_a_delay_uses_the_backoff_and_stops_at_max_attempts(clock):
    task = fixtures.asks_retry(schedule=0)
    for _ in range(3):
        drain(clock)
        clock.advance(3600)
    assert task.refresh().status == ERROR and task.attempts == 3


def test_a_bad_retry_delay_is_refused():
    with pytest.raises(ValueError, match="Retry delay"):
        background_task.Retry(delay=-1)


# -- results, ttl, pruning -----------------------------------------------------------------


def test_a_result_json_cannot_hold_fails_a_task_that_keeps_results(clock):
    task = fixtures.returns_object(schedule=0)
    drain(clock)
    task.refresh()
    assert task.status == ERROR and task.attempts == 1  # not retried: it would fail again
    assert "returned a object, which JSON cannot store" in task.error["message"]
    legacy = fixtures.returns_object_legacy(schedule=0)
    drain(clock)
    assert legacy.refresh().status == DONE and legacy.result is None  # as 1.2.8


def test_ttl_sets_when_the_history_row_expires_and_workers_prune_it(clock):
    task = fixtures.add(1, 2, schedule=0, ttl=timedelta(minutes=5))
    short = fixtures.short_lived(7, schedule=0)
    forever = fixtures.noop(schedule=0)
    drain(clock)
    expiry = dict(CompletedTask.objects.values_list("task_id", "expires_at"))
    assert expiry[task.task_id] == clock.now + timedelta(minutes=5)
    assert expiry[short.task_id] == clock.now
    assert expiry[forever.task_id] is None
    assert prune_expired(clock.now) == 1
    assert prune_expired(clock.now + timedelta(minutes=6)) == 1
    assert list(CompletedTask.objects.values_list("task_id", flat=True)) == [forever.task_id]


@override_settings(BACKGROUND_TASK_RESULT_TTL=3600)
def test_the_setting_is_the_default_ttl(clock):
    task = fixtures.noop(schedule=0)
    drain(clock)
    assert CompletedTask.objects.get(task_id=task.task_id).expires_at == clock.now + timedelta(
        hours=1
    )


def test_save_results_is_rpqueue_s_name_for_ttl():
    registry = Tasks()
    proxy = registry.background(save_results=30)(lambda: None)
    assert proxy.ttl == 30
    with pytest.raises(TypeError, match="not both"):
        registry.background(ttl=1, save_results=2)
    with pytest.raises(ValueError, match="ttl must be"):
        registry.background(ttl=-1)


def test_prune_tasks_command(clock, capsys):
    old = clock.now
    for value in range(3):
        fixtures.add(value, 0, schedule=0)
    fixtures.fail_invalid(schedule=0)
    drain(clock)
    CompletedTask.objects.update(run_at=old - timedelta(days=10))
    call_command("prune_tasks", "--older-than", "7d", "--status", "error", "--dry-run")
    assert "Would delete 1 finished task(s) (older than 7d)" in capsys.readouterr().out
    assert CompletedTask.objects.count() == 4
    call_command("prune_tasks", "--older-than", "7d", "--batch-size", "2", "--pause", "0.01")
    out = capsys.readouterr().out
    assert "older than 7d: 2/4 deleted" in out and "Deleted 4 finished task(s)" in out
    assert not CompletedTask.objects.exists()
    with pytest.raises(Exception, match="not a duration"):
        call_command("prune_tasks", "--older-than", "a while")
    with pytest.raises(Exception, match="Unknown status"):
        call_command("prune_tasks", "--older-than", "1d", "--status", "lost")
    for pause in ("-1", "nan", "inf"):
        with pytest.raises(CommandError, match=f"--pause must be 0 or more seconds, not {pause}"):
            call_command("prune_tasks", "--pause", pause)


def test_durations():
    assert parse_duration("90") == timedelta(seconds=90)
    assert parse_duration("15m") == timedelta(minutes=15)
    assert parse_duration("2w") == timedelta(weeks=2)


# -- enqueue by name and the seeds' spellings ------------------------------------------------


def test_enqueue_by_name_with_the_call_keywords():
    task = background_task.enqueue("tests.testapp.tasks.add", 2, 5, schedule=60, queue="x")
    assert task.task_name == "tests.testapp.tasks.add" and task.params() == ([2, 5], {})
    assert task.queue == "x"
    same = Task.objects.enqueue("tests.testapp.tasks.noop")
    assert same.task_name == "tests.testapp.tasks.noop"
    with pytest.raises(TaskNotRegistered, match=r"Did you mean 'tests\.testapp\.tasks\.add'"):
        background_task.enqueue("tests.testapp.tasks.ad", 1, 2)


def test_delayed_task_is_autotask_s_spelling():
    registry = Tasks()
    proxy = registry.delayed_task(delay=30, retries=2, ttl=300)(lambda: None)
    assert (proxy.max_attempts, proxy.ttl) == (3, 300)
    assert proxy.schedule == TaskSchedule.create(30)
    with pytest.raises(ValueError, match="retries must be"):
        registry.delayed_task(retries=-1)


def test_the_status_constants_are_importable_from_the_package():
    assert (WAITING, RUNNING, DONE, ERROR, CANCELLED) == (
        status.WAITING,
        status.RUNNING,
        status.DONE,
        status.ERROR,
        status.CANCELLED,
    )


def test_current_task_is_none_outside_a_task():
    assert background_task.current_task() is None


def test_a_worker_passes_richer_arguments_and_fails_a_task_whose_model_row_is_gone(clock):
    from decimal import Decimal

    from django.utils import timezone

    from tests.testapp.models import Execution as Row

    row = Row.objects.create(task_name="x", key="kept", worker_pid=1, started_at=timezone.now())
    task = fixtures.describe(row, timezone.now(), {Decimal("1.50"), Decimal("2")}, schedule=0)
    drain(clock)
    assert task.refresh().result == ["kept", "datetime", ["1.50", "2"]]
    gone = fixtures.describe(row, timezone.now(), set(), schedule=0)
    row.delete()
    drain(clock)
    gone.refresh()
    assert gone.status == ERROR and gone.attempts == 1  # not retried
    assert gone.error["exception_class_path"] == "background_task.exceptions.ArgumentGone"
    assert "DoesNotExist" in gone.error["message"]
