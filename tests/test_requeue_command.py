"""manage.py requeue_tasks: failed and cancelled tasks back in the queue, with progress."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from background_task import ERROR, WAITING
from background_task.models import CompletedTask, Task
from background_task.runtime.worker import Worker
from tests.testapp import tasks as fixtures

pytestmark = pytest.mark.django_db(transaction=True)


def test_failed_tasks_go_back_under_their_ids(clock, capsys):
    failed = [fixtures.fail_invalid(schedule=0) for _ in range(3)]
    fixtures.add(1, 1, schedule=0)
    worker = Worker(clock=clock, sleep=0.01)
    while worker.step():
        pass
    assert CompletedTask.objects.filter(status=ERROR).count() == 3
    call_command("requeue_tasks", "--dry-run")
    assert "Would requeue 3 task(s)." in capsys.readouterr().out
    call_command("requeue_tasks", "--task-name", "tests.testapp.tasks.fail_invalid")
    out = capsys.readouterr().out
    assert "3/3 requeued" in out and "Requeued 3 task(s)." in out
    assert sorted(Task.objects.values_list("task_id", flat=True)) == sorted(
        t.task_id for t in failed
    )
    assert set(Task.objects.values_list("status", "attempts")) == {(WAITING, 0)}
    assert CompletedTask.objects.count() == 1  # the success stays in the history


def test_bad_options_are_refused():
    with pytest.raises(CommandError, match="--status takes error and/or cancelled"):
        call_command("requeue_tasks", "--status", "done")
    with pytest.raises(CommandError, match="--since"):
        call_command("requeue_tasks", "--since", "recently")
