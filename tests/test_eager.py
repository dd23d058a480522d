"""Eager mode: tasks run when queued, in process, exactly as a worker runs them."""

from __future__ import annotations

import pytest
from django.test import override_settings

from background_task import DONE, ERROR, WAITING, signals
from background_task.models import CompletedTask, Task
from background_task.testing import run_immediately
from tests.testapp import tasks as fixtures
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)


@override_settings(BACKGROUND_TASK_RUN_IMMEDIATELY=True)
def test_the_setting_runs_a_task_when_it_is_queued_even_if_scheduled_later():
    task = fixtures.add(20, 22, schedule=3600)
    assert (task.status, task.result, task.attempts) == (DONE, 42, 1)
    assert not Task.objects.exists()
    assert CompletedTask.objects.get(task_id=task.task_id).result == 42


def test_the_context_manager_and_decorator(clock):
    with run_immediately():
        fixtures.record("inside")
    fixtures.record("outside")
    assert list(Execution.objects.values_list("key", flat=True)) == ["inside"]

    @run_immediately()
    def queue_one():
        return fixtures.add(1, 1)

    assert queue_one().result == 2
    with override_settings(BACKGROUND_TASK_RUN_IMMEDIATELY=True), run_immediately(False):
        assert fixtures.add(1, 2).status == WAITING


def test_failures_retries_and_signals_are_a_worker_s():
    seen = []

    def note(sender, **kwargs):
        seen.append(kwargs.get("signal"))

    for signal in (signals.task_started, signals.task_error, signals.task_rescheduled):
        signal.connect(note)
    try:
        with run_immediately():
            retried = fixtures.fail("boom")
            final = fixtures.fail_invalid()
    finally:
        for signal in (signals.task_started, signals.task_error, signals.task_rescheduled):
            signal.disconnect(note)
    assert (retried.status, retried.attempts) == (WAITING, 1)  # rescheduled, not run again
    assert "boom" in retried.error["message"]
    assert final.status == ERROR
    assert seen.count(signals.task_started) == 2 and signals.task_rescheduled in seen


def test_bulk_queued_tasks_run_too():
    with run_immediately():
        rows = fixtures.add.bulk([(1, 2), (3, 4)])
    assert [row.result for row in rows] == [3, 7]
