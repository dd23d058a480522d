"""manage.py task_status: queue depths, ages, throughput, workers, schedules."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from background_task.models import CompletedTask, Task
from background_task.runtime.liveness import Liveness
from background_task.runtime.worker import Worker
from background_task.store.stats import snapshot
from tests.testapp import tasks as fixtures

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_snapshot_counts_what_is_queued_running_finished_and_failed(clock):
    fixtures.record("later", schedule=3600)
    overdue = fixtures.record("due")
    Task.objects.filter(pk=overdue.pk).update(run_at=timezone.now() - timedelta(seconds=90))
    fixtures.noop()  # the default queue
    held = fixtures.add(1, 2, schedule=0)
    Liveness("host:1:aaaaaaaa").register()
    held.lock("host:1:aaaaaaaa")
    fixtures.fail_invalid(schedule=0)
    Worker(clock=clock, sleep=0.01, queues=[None]).step()  # runs noop or fail_invalid
    Worker(clock=clock, sleep=0.01, queues=[None]).step()
    CompletedTask.objects.update(run_at=timezone.now())
    data = snapshot(timezone.now())
    records = data["queues"]["records"]
    assert (records["waiting"], records["due"], records["running"]) == (2, 1, 0)
    assert records["oldest_due_seconds"] >= 90
    default = data["queues"]["<default>"]
    assert default["running"] == 1 and default["failed_last_hour"] == 1
    assert data["finished_last_minute"] == 2 and data["finished_last_hour"] == 2
    [worker] = data["workers"]
    assert worker["worker_id"] == "host:1:aaaaaaaa" and worker["running"] == 1
    assert not worker["lost"]


def test_the_command_prints_text_and_json(capsys):
    fixtures.record("x", schedule=0)
    call_command("task_status")
    text = capsys.readouterr().out
    assert "records" in text and "oldest due" in text and "Finished:" in text
    call_command("task_status", "--json")
    data = json.loads(capsys.readouterr().out)
    assert data["queues"]["records"]["waiting"] == 1
    with pytest.raises(CommandError, match="--watch"):
        call_command("task_status", "--watch", "0")
