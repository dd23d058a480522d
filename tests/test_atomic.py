"""``@background(atomic=True)``: the task's writes to the queue's database
commit with its success or not at all, whatever ends the run (an exception,
a lost claim, a time limit, a SIGKILL)."""

from __future__ import annotations

import os
import random

import pytest
from django.db import connection

from background_task import background, call, status
from background_task.api.registry import Tasks
from background_task.models import CompletedTask
from tests.chaos import CHAOS_ENV, Chaos, drive
from tests.conftest import drain, subprocess_env
from tests.testapp import tasks as fixtures
from tests.testapp.models import Counter, Execution

pytestmark = pytest.mark.django_db(transaction=True)


def _recorded(name: str) -> set[str]:
    return set(Execution.objects.filter(task_name=name).values_list("key", flat=True))


def test_a_success_commits_the_writes_with_it(clock):
    task = fixtures.atomic_record("kept")
    drain(clock)
    assert CompletedTask.objects.get(task_id=task.task_id).status == status.DONE
    assert _recorded("atomic_record") == {"kept"}


def test_a_failure_leaves_none_of_the_writes_behind(clock):
    task = fixtures.atomic_record("undone", fail=True)
    drain(clock)
    failed = CompletedTask.objects.get(task_id=task.task_id)
    assert failed.status == status.ERROR and "failing after a write" in failed.last_error
    assert _recorded("atomic_record") == set()


@pytest.mark.skipif(
    os.environ.get("DB_BACKEND", "sqlite") == "sqlite",
    reason="on SQLite the task's transaction holds the only write lock: no one can take "
    "its claim away meanwhile",
)
def test_a_lost_claim_rolls_the_writes_back(clock):
    task = fixtures.atomic_stolen("stolen")
    drain(clock)
    assert _recorded("atomic_stolen") == set()
    assert not CompletedTask.objects.filter(task_id=task.task_id).exists()


def test_a_run_killed_at_its_time_limit_leaves_nothing(start_worker):
    task = fixtures.atomic_overrun("killed")
    code, output = start_worker("--burst").wait(120)
    assert code == 0, output
    failed = CompletedTask.objects.get(task_id=task.task_id)
    assert failed.status == status.ERROR and "TaskTimeout" in failed.last_error
    assert _recorded("atomic_overrun") == set()


def test_atomic_is_checked_when_the_task_is_defined():
    registry = Tasks()
    with pytest.raises(TypeError, match="atomic must be True or False, not 'yes'"):
        registry.background(atomic="yes")
    with pytest.raises(TypeError, match="an async def task runs on an event loop"):

        @registry.background(atomic=True)
        async def coroutine() -> None:
            pass

    assert background(atomic=True)(lambda: None).atomic is True


def test_killed_at_random_the_counter_counts_each_task_exactly_once(start_worker, tmp_path):
    """1,000 atomic tasks each add one to a counter while workers are
    SIGKILLed at random (one whole group too) and one group is stopped: the
    counter ends at exactly 1,000, however many runs were cut short."""
    total = int(os.environ.get("BGTASK_ATOMIC_TASKS", "1000"))
    seed = int(os.environ.get("BGTASK_CHAOS_SEED", random.randrange(1 << 30)))
    Counter.objects.create(name="chaos")
    fixtures.atomic_increment.bulk(call("chaos") for _ in range(total))
    chaos = Chaos(
        start_worker,
        subprocess_env(**CHAOS_ENV),
        random.Random(seed),
        str(tmp_path),
        queues="atomic",
    )
    chaos.start_group()
    chaos.start_group()

    def done() -> int:
        return CompletedTask.objects.filter(queue="atomic", status=status.DONE).count()

    drive(chaos, total, timeout=240, count_done=done)
    chaos.stop()
    failed = CompletedTask.objects.filter(queue="atomic").exclude(status=status.DONE).count()
    counted = Counter.objects.get(name="chaos").value
    runs = sum(
        len(row.worker_ids)
        for row in CompletedTask.objects.filter(queue="atomic").only("worker_ids")
    )
    print(
        f"\natomic chaos on {connection.vendor} (seed {seed}): tasks={total} kills={chaos.kills} "
        f"attempts={runs} counter={counted}"
    )
    assert failed == 0, f"seed {seed}"
    assert counted == total, f"seed {seed}: the counter is {counted}, not {total}"
