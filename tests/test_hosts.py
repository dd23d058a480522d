"""Many hosts: two groups of real workers under different host names
(BACKGROUND_TASK_HOST_NAME), one frozen with SIGSTOP mid-run as a network
partition or a stalled machine would freeze it.

The other group recovers the frozen group's tasks once its heartbeats are
BACKGROUND_TASK_WORKER_LOST_AFTER old; when the frozen group resumes, its
late writes are fenced by the claim token: every task ends with one
outcome, recorded once, by the group that ran it last. (While the group is
frozen and then resumed, its runs and the recovered runs overlap in time:
docs/guarantees.md says what is and is not promised there.)
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from django.db import connection
from django.test import override_settings

from background_task import status
from background_task.core.conf import host_name
from background_task.models import CompletedTask, Task, WorkerProcess
from background_task.store.ids import make_worker_id
from tests.conftest import subprocess_env, wait_until
from tests.testapp import tasks as fixtures
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)

TASKS = 8
SECONDS = 2.0  # each task's run
LOST_AFTER = 3.0


def group_env(host: str) -> dict[str, str]:
    # Without self-fencing: this test is about the claim token fencing the
    # late writes of runs that went on (tests/test_partition.py shows
    # self-fencing stopping them).
    return subprocess_env(
        BGTASK_SELF_FENCING="0",
        BACKGROUND_TASK_HOST_NAME=host,
        BGTASK_HEARTBEAT_INTERVAL="0.5",
        BGTASK_WORKER_LOST_AFTER=str(LOST_AFTER),
        BGTASK_SHUTDOWN_TIMEOUT="10",
    )


def test_the_host_name_setting_and_environment_name_worker_ids(monkeypatch):
    monkeypatch.setenv("BACKGROUND_TASK_HOST_NAME", "from-env")
    with override_settings(BACKGROUND_TASK_HOST_NAME="from-settings"):
        assert host_name() == "from-settings"
        assert make_worker_id().startswith("from-settings:")
    try:
        assert host_name() == "from-env"  # the setting wins; without it, the environment
    finally:
        monkeypatch.undo()
        with override_settings(BACKGROUND_TASK_HOST_NAME=None):
            pass  # leaving it signals a change: the cached "from-env" is forgotten
    assert host_name() != "from-env"


@pytest.mark.parametrize("value", ["", "a:b", 42, "x" * 256])
def test_a_bad_host_name_fails_the_checks(settings, value):
    from background_task.checks import check_settings

    settings.BACKGROUND_TASK_HOST_NAME = value
    assert "background_task.E028" in [message.id for message in check_settings()]


def test_a_frozen_host_loses_its_tasks_to_the_other_and_its_late_writes_are_fenced(
    start_worker,
):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite is one host's database")
    queued = [fixtures.sleep_for(SECONDS, key=str(index)) for index in range(TASKS)]
    group_a = start_worker("--workers", "2", "--sleep", "0.1", env=group_env("host-a"))
    wait_until(lambda: Execution.objects.count() >= 2, timeout=60)
    a_pids = set(
        WorkerProcess.objects.filter(host="host-a", kind="worker").values_list("pid", flat=True)
    )
    os.killpg(group_a.process.pid, signal.SIGSTOP)  # the partition
    frozen_at = time.monotonic()
    held = set(Task.objects.filter(status=status.RUNNING).values_list("task_id", flat=True))
    assert held, "group A held no task when it froze"
    group_b = start_worker("--workers", "2", "--sleep", "0.1", env=group_env("host-b"))
    try:
        # B runs the rest, and A's tasks once A's heartbeats are LOST_AFTER old.
        wait_until(
            lambda: CompletedTask.objects.filter(task_id__in=held).count() == len(held),
            timeout=90,
        )
        assert time.monotonic() - frozen_at >= LOST_AFTER
    finally:
        os.killpg(group_a.process.pid, signal.SIGCONT)  # the partition heals
    # A's frozen runs finish now; their outcomes must change nothing.
    wait_until(
        lambda: (
            Execution.objects.filter(worker_pid__in=a_pids, finished_at__isnull=False).count()
            >= Execution.objects.filter(worker_pid__in=a_pids).count()
        ),
        timeout=60,
    )
    wait_until(lambda: CompletedTask.objects.count() >= TASKS, timeout=90)
    time.sleep(1.0)  # room for any late write of A's to land
    for group in (group_a, group_b):
        group.signal(signal.SIGTERM)
    code_a, output_a = group_a.wait(timeout=60)
    code_b, output_b = group_b.wait(timeout=60)
    assert code_b == 0, output_b
    assert code_a == 0, output_a

    finished = list(CompletedTask.objects.all())
    assert sorted(row.task_id for row in finished) == sorted(task.task_id for task in queued)
    assert all(row.status == status.DONE for row in finished), [
        (row.task_id, row.status) for row in finished
    ]
    assert not Task.objects.exists()
    for row in finished:
        if row.task_id in held:
            # Recovered: a second attempt, recorded by B, not A's late one.
            assert row.attempts == 2 and row.worker_ids[-1].startswith("host-b:"), row.worker_ids
    runs = {}
    for execution in Execution.objects.all():
        runs.setdefault(execution.key, []).append(execution.worker_pid in a_pids)
    assert sorted(runs) == sorted(str(index) for index in range(TASKS))
    # The held tasks ran twice (A's frozen run and B's), the others once.
    held_keys = {task.task_id: index for index, task in enumerate(queued)}
    for task_id in held:
        assert sorted(runs[str(held_keys[task_id])]) == [False, True]
