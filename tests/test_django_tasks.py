"""The django.tasks backend (Django 6.0+): enqueue, results, the worker, signals, retries."""

from __future__ import annotations

import signal as signals_module
from datetime import timedelta

import pytest

tasks_api = pytest.importorskip("django.tasks", reason="django.tasks needs Django 6.0 or later")

from django.tasks import TaskResultStatus, task_backends  # noqa: E402
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist  # noqa: E402
from django.tasks.signals import task_enqueued, task_finished, task_started  # noqa: E402
from django.test import override_settings  # noqa: E402
from django.utils import timezone  # noqa: E402

from background_task.backends import DatabaseBackend  # noqa: E402
from background_task.models import CompletedTask, Task  # noqa: E402
from tests.conftest import drain, subprocess_env  # noqa: E402
from tests.testapp import dtasks  # noqa: E402
from tests.testapp.models import Execution  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=True)


def run_all(clock, backends=("default", "retrying")):
    drain(clock, backends=list(backends))


def test_enqueue_stores_a_row_and_returns_a_ready_result():
    result = dtasks.add.enqueue(2, 3)
    assert result.status == TaskResultStatus.READY and result.backend == "default"
    assert (result.args, result.kwargs, result.worker_ids, result.errors) == ([2, 3], {}, [], [])
    row = Task.objects.get(task_id=result.id)
    assert (row.task_name, row.backend, row.queue) == (
        "tests.testapp.dtasks.add",
        "default",
        "default",
    )
    assert row.max_attempts == 1  # one attempt, as django.tasks expects
    assert isinstance(task_backends["default"], DatabaseBackend)


def test_the_worker_runs_it_and_every_field_is_right(clock):
    result = dtasks.add.enqueue(2, 3)
    run_all(clock)
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.is_finished
    assert result.return_value == 5 and result.attempts == 1
    assert result.enqueued_at and result.started_at and result.last_attempted_at
    assert result.finished_at >= result.started_at
    same = dtasks.add.get_result(result.id)
    assert same.return_value == 5 and same.worker_ids == result.worker_ids
    assert CompletedTask.objects.get(task_id=result.id).backend == "default"


def test_context_attempt_is_one_on_the_first_run(clock):
    result = dtasks.which_attempt.enqueue()
    run_all(clock)
    assert result.refresh() is None or True
    assert result.return_value == [1, result.id]


def test_a_failure_is_final_by_default_with_its_error(clock):
    result = dtasks.explode.enqueue("boom")
    run_all(clock)
    result.refresh()
    assert result.status == TaskResultStatus.FAILED and result.attempts == 1
    [error] = result.errors
    assert error.exception_class_path == "builtins.RuntimeError"
    assert "boom" in error.traceback and error.exception_class is RuntimeError
    with pytest.raises(ValueError, match="Task failed"):
        _ = result.return_value


def test_retries_are_opt_in_and_ready_between_attempts(clock):
    result = dtasks.flaky.enqueue("again")
    run_all(clock)
    result.refresh()
    assert result.status == TaskResultStatus.READY and not result.is_finished
    assert len(result.errors) == 1 and result.attempts == 1
    for _ in range(2):
        clock.advance(3600)
        run_all(clock)
    result.refresh()
    assert result.status == TaskResultStatus.FAILED and len(result.errors) == 3


def test_async_functions_run(clock):
    result = dtasks.async_add.enqueue(1, 2)
    run_all(clock)
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 3


def test_async_functions_run_on_the_workers_event_loop(clock):
    result = dtasks.async_where.enqueue()
    run_all(clock)
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == ["bgtask-async", 1]


def test_a_return_value_json_cannot_hold_fails_the_task(clock):
    result = dtasks.returns_object.enqueue()
    run_all(clock)
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class_path.endswith("ResultNotSerializable")


def test_priority_queue_and_run_after(clock):
    later = timezone.now() + timedelta(hours=1)
    result = dtasks.send_mail.using(run_after=later).enqueue("a@example.com")
    row = Task.objects.get(task_id=result.id)
    assert (row.priority, row.queue, row.run_at) == (10, "emails", later)
    run_all(clock)
    assert result.refresh() is None or result.status == TaskResultStatus.READY  # not due yet
    clock.advance(3601 + (later - clock.now).total_seconds())
    run_all(clock)
    result.refresh()
    assert result.return_value == "sent to a@example.com"


def test_signals_are_sent_in_order_and_a_raising_receiver_changes_nothing(clock):
    seen = []

    def record(sender, task_result, **kwargs):
        seen.append((kwargs["signal"], sender, task_result.status))

    def broken(sender, task_result, **kwargs):
        raise RuntimeError("a buggy receiver")

    for sig in (task_enqueued, task_started, task_finished):
        sig.connect(record)
        sig.connect(broken)
    try:
        result = dtasks.add.enqueue(1, 1)
        run_all(clock)
    finally:
        for sig in (task_enqueued, task_started, task_finished):
            sig.disconnect(record)
            sig.disconnect(broken)
    assert [(s, status) for s, _, status in seen] == [
        (task_enqueued, TaskResultStatus.READY),
        (task_started, TaskResultStatus.RUNNING),
        (task_finished, TaskResultStatus.SUCCESSFUL),
    ]
    assert {sender for _, sender, _ in seen} == {DatabaseBackend}
    assert result.refresh() is None or result.status == TaskResultStatus.SUCCESSFUL


def test_unknown_ids_and_other_backends_rows():
    with pytest.raises(TaskResultDoesNotExist):
        task_backends["default"].get_result("no-such-id")
    other = dtasks.flaky.enqueue("x")
    with pytest.raises(TaskResultDoesNotExist):
        task_backends["default"].get_result(other.id)


def test_only_django_tasks_ever_run(clock):
    row = Task.objects.new_task("os.system", ["echo owned"])
    row.backend = "default"
    row.save()
    run_all(clock)
    completed = CompletedTask.objects.get(task_id=row.task_id)
    assert completed.status == "error" and "not a django.tasks Task" in completed.last_error


def test_invalid_tasks_are_refused_at_decoration_or_enqueue():
    with pytest.raises(InvalidTask, match="Queue"):
        dtasks.add.using(queue_name="nope").enqueue(1, 2)
    with pytest.raises(InvalidTask):
        dtasks.add.using(priority=1000)


def test_results_stay_readable_after_queues_change(clock):
    result = dtasks.send_mail.enqueue("b@example.com")
    run_all(clock)
    tasks_setting = {
        "default": {"BACKEND": "background_task.backends.DatabaseBackend", "QUEUES": ["default"]}
    }
    with override_settings(TASKS=tasks_setting):
        again = task_backends["default"].get_result(result.id)
        assert again.return_value == "sent to b@example.com"


def test_process_tasks_serves_its_backends(start_worker):
    result = dtasks.add.enqueue(20, 22)
    worker = start_worker("--sleep", "0.1", "--backend", "default", env=subprocess_env())
    deadline = timezone.now() + timedelta(seconds=30)
    while not result.is_finished and timezone.now() < deadline:
        result.refresh()
    worker.signal(signals_module.SIGTERM)
    code, output = worker.wait()
    assert code == 0, output
    assert result.return_value == 42


def test_get_result_through_another_task_is_a_mismatch():
    from django.tasks.exceptions import TaskResultMismatch

    result = dtasks.add.enqueue(1, 2)
    with pytest.raises(TaskResultMismatch):
        dtasks.explode.get_result(result.id)


def test_aenqueue_and_aget_result(clock):
    from asgiref.sync import async_to_sync

    result = async_to_sync(dtasks.add.aenqueue)(4, 4)
    run_all(clock)
    again = async_to_sync(dtasks.add.aget_result)(result.id)
    assert again.return_value == 8


def test_override_settings_tasks_switches_the_backend():
    with override_settings(
        TASKS={"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}
    ):
        assert not isinstance(task_backends["default"], DatabaseBackend)
    assert isinstance(task_backends["default"], DatabaseBackend)


def test_a_mixed_queue_of_background_and_django_tasks(clock):
    from tests.testapp import tasks as fixtures

    legacy = fixtures.add(1, 2, schedule=0)
    modern = dtasks.add.enqueue(3, 4)
    run_all(clock)
    assert legacy.refresh().result == 3
    modern.refresh()
    assert modern.return_value == 7


def test_a_worker_that_serves_no_alias_leaves_django_tasks_alone(clock):
    result = dtasks.add.enqueue(1, 1)
    run_all(clock, backends=())
    result.refresh()
    assert result.status == TaskResultStatus.READY


@pytest.mark.skipif(__import__("django").VERSION < (6, 1), reason="task options need Django 6.1")
def test_task_options_on_django_6_1_time_limit_and_attempts(start_worker):
    result = dtasks.sleepy.enqueue(30)
    row = Task.objects.get(task_id=result.id)
    assert (row.max_attempts, row.timeout) == (2, 1)
    worker = start_worker("--sleep", "0.1", "--backend", "default", env=subprocess_env())
    deadline = timezone.now() + timedelta(seconds=40)
    result.refresh()
    while len(result.errors) < 1 and timezone.now() < deadline:
        result.refresh()
    worker.signal(signals_module.SIGTERM)
    worker.wait()
    assert result.errors[0].exception_class_path == "background_task.exceptions.TaskTimeout"
    assert result.status == TaskResultStatus.READY  # one attempt left, after a backoff


def test_a_killed_worker_s_django_task_is_settled_as_failed(start_worker):
    import os
    import time

    from tests.chaos import children

    result = dtasks.sleeps.enqueue(60)
    worker = start_worker("--sleep", "0.1", "--backend", "default", env=subprocess_env())
    deadline = time.monotonic() + 30
    # Running its code, not only claimed: a worker killed between the two
    # puts the task back unstarted, and the next one would sleep its 60 s.
    while not Execution.objects.filter(task_name="dtasks.sleeps").exists():
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.05)
    [child] = children(worker.process.pid)
    os.kill(child, signals_module.SIGKILL)
    while not result.is_finished and time.monotonic() < deadline + 10:
        time.sleep(0.05)
        result.refresh()
    worker.signal(signals_module.SIGTERM)
    worker.wait()
    assert result.status == TaskResultStatus.FAILED  # one attempt: lost, so failed
    assert result.errors[0].exception_class_path == "background_task.exceptions.WorkerLost"
    assert result.attempts == 1


def test_a_django_task_reports_progress_through_current_task(clock):
    result = dtasks.reports_progress.enqueue(4)
    run_all(clock)
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 4
    done = CompletedTask.objects.get(task_id=result.id)
    assert (done.progress.done, done.progress.percent, done.progress.message) == (
        4,
        100.0,
        "step 4",
    )
    assert done.meta == {"steps": 4}
