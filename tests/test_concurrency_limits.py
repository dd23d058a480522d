"""Concurrency limits: at most N runs with one key at once, across workers."""

from __future__ import annotations

import io
import json
import re
from collections import defaultdict

import pytest
from django.core.management import call_command

from background_task import background
from background_task.core.limits import call_key, check_key, check_limit
from background_task.models import CompletedTask, ConcurrencySlot, Task
from background_task.runtime.worker import Worker
from background_task.store import limits
from background_task.store.claim import ClaimRequest, get_strategy
from background_task.tasks import tasks
from tests.conftest import drain, wait_until
from tests.testapp.models import Execution
from tests.testapp.tasks import limited, limited_failing

# -- options (pure) -------------------------------------------------------------------


def test_keys_come_from_the_name_a_string_or_a_callable():
    assert call_key("app.sync", None, (), {}) == "app.sync"
    assert call_key("app.sync", "shared", (1,), {}) == "shared"
    assert call_key("app.sync", lambda account, **kw: f"acct-{account}", (7,), {}) == "acct-7"


@pytest.mark.parametrize(
    ("check", "error", "fragment"),
    [
        (lambda: check_limit(0), ValueError, "concurrency_limit must be a positive integer"),
        (lambda: check_limit(True), ValueError, "not True"),
        (lambda: check_key(5, per_call=False), TypeError, "a string or a callable"),
        (lambda: check_key(len, per_call=True), TypeError, "must be a string, not"),
        (lambda: check_key("x" * 191, per_call=True), ValueError, "the limit is 190"),
        (lambda: call_key("t", lambda: 3, (), {}), TypeError, "must return a string, not int"),
    ],
)
def test_bad_limits_and_keys_name_the_problem(check, error, fragment):
    with pytest.raises(error, match=re.escape(fragment)):
        check()


def test_the_decorator_checks_its_limit_options():
    with pytest.raises(ValueError, match="concurrency_key needs concurrency_limit"):
        background(concurrency_key="x")
    with pytest.raises(ValueError, match="concurrency_limit must be"):
        background(concurrency_limit=-1)


db = pytest.mark.django_db(transaction=True)


@db
def test_a_call_stores_its_key_and_limit():
    task = limited("7:a")
    assert (task.concurrency_key, task.concurrency_limit) == ("account-7", 2)
    assert limited("8:a", concurrency_key="shared").concurrency_key == "shared"
    with pytest.raises(ValueError, match="has no concurrency_limit"):
        tasks.enqueue("tests.testapp.tasks.record", "a", concurrency_key="x")


# -- slots ----------------------------------------------------------------------------


def _claim(clock, n=10):
    request = ClaimRequest("test-worker", n, clock(), tasks.names())
    return get_strategy("default").claim(request)


@db
def test_over_the_limit_a_claimed_task_is_blocked_not_run(clock):
    first, second, third = (limited(f"7:{n}") for n in range(3))
    other = limited("8:a")
    claimed = {task.pk: task for task in _claim(clock)}
    assert limits.acquire(claimed[first.pk])
    assert limits.acquire(claimed[second.pk])
    assert not limits.acquire(claimed[third.pk])
    assert limits.acquire(claimed[other.pk])  # another key has its own slots
    blocked = Task.objects.get(pk=third.pk)
    assert blocked.status == "blocked" and blocked.claim_token is None
    out = io.StringIO()
    call_command("task_status", "--json", stdout=out)
    assert json.loads(out.getvalue())["queues"]["<default>"]["blocked"] == 1
    assert blocked.locked_by is None and blocked.started_at is None
    assert sorted(ConcurrencySlot.objects.values_list("key", "slot")) == [
        ("account-7", 0),
        ("account-7", 1),
        ("account-8", 0),
    ]
    # Blocked tasks are not claimed again (no busy loop).
    assert _claim(clock) == []
    # A slot frees when its run ends: the blocked task waits as usual again.
    Task.objects.filter(pk=first.pk).delete()
    assert limits.release(claimed[first.pk], claimed[first.pk].claim_token) == 1
    assert Task.objects.get(pk=third.pk).status == "waiting"
    assert ConcurrencySlot.objects.filter(task_id=first.task_id).count() == 0


@db
def test_the_sweep_frees_the_slot_of_a_run_that_ended_without_giving_it_back(clock):
    first, second, third = (limited(f"7:{n}") for n in range(3))
    claimed = {task.pk: task for task in _claim(clock)}
    assert limits.acquire(claimed[first.pk]) and limits.acquire(claimed[second.pk])
    assert not limits.acquire(claimed[third.pk])
    # A lost worker's task goes back to waiting: its claim token is gone.
    Task.objects.filter(pk=first.pk).update(status="waiting", claim_token=None, locked_by=None)
    assert limits.sweep() == 1
    assert not ConcurrencySlot.objects.filter(task_id=first.task_id).exists()
    assert Task.objects.get(pk=third.pk).status == "waiting"


@db
def test_a_blocked_task_can_be_cancelled(clock):
    tasks_ = [limited(f"7:{n}") for n in range(3)]
    claimed = {task.pk: task for task in _claim(clock)}
    for task in tasks_:
        limits.acquire(claimed[task.pk])
    blocked = Task.objects.get(status="blocked")
    assert blocked.cancel()
    assert CompletedTask.objects.get(task_id=blocked.task_id).status == "cancelled"


@db
def test_a_worker_runs_every_task_and_wakes_the_blocked_ones(clock):
    for n in range(6):
        limited(f"7:{n}")
    for n in range(2):
        limited(f"8:{n}")
    drain(clock, threads=4)
    assert Execution.objects.filter(task_name="limited").count() == 8
    assert not Task.objects.exists()
    assert not ConcurrencySlot.objects.filter(task_id__in=Task.objects.values("task_id")).exists()


@db
def test_a_retry_frees_the_slot(clock):
    first = limited_failing("a")
    second = limited_failing("b")
    worker = Worker(clock=clock, sleep=0.01)
    worker.step()
    # One ran and failed (waiting for its retry), the other was blocked then woken.
    rows = {task.pk: task for task in Task.objects.all()}
    assert rows[first.pk].attempts + rows[second.pk].attempts == 1
    assert {task.status for task in rows.values()} == {"waiting"}
    for _ in range(3):  # each retry is due a few seconds after the last run
        clock.advance(3600)
        drain(clock)
    assert Execution.objects.filter(task_name="limited_failing").count() == 4
    assert CompletedTask.objects.filter(status="error").count() == 2


def _most_at_once(executions) -> dict[str, int]:
    """Per account, the most runs that overlapped in time."""
    events: dict[str, list[tuple[object, int]]] = defaultdict(list)
    for execution in executions:
        account = execution.key.split(":")[0]
        events[account].append((execution.started_at, 1))
        events[account].append((execution.finished_at, -1))
    most = {}
    for account, changes in events.items():
        running = peak = 0
        for _, change in sorted(changes, key=lambda event: (event[0], event[1])):
            running += change
            peak = max(peak, running)
        most[account] = peak
    return most


@db
def test_real_workers_never_run_more_than_the_limit_per_key(start_worker):
    """2 worker processes x 4 threads; 3 accounts with a limit of 2 each."""
    for n in range(12):
        limited(f"{n % 3}:{n}", seconds=0.15)
    worker = start_worker("--workers", "2", "--threads", "4", "--sleep", "0.5")
    try:
        wait_until(lambda: Execution.objects.filter(finished_at__isnull=False).count() == 12, 60)
    finally:
        worker.signal()
        code, output = worker.wait()
    assert code == 0, output
    executions = list(Execution.objects.filter(task_name="limited"))
    assert len(executions) == 12
    most = _most_at_once(executions)
    assert set(most) == {"0", "1", "2"} and max(most.values()) <= 2, most
    assert 2 in most.values(), most  # the limit is not a lock: two did run at once
    assert not Task.objects.exists()


@db
def test_runs_in_the_callers_process_take_no_slot(settings):
    settings.BACKGROUND_TASK_RUN_IMMEDIATELY = True
    limited("7:a")
    assert Execution.objects.filter(task_name="limited").count() == 1
    assert not ConcurrencySlot.objects.exists()
    settings.BACKGROUND_TASK_RUN_IMMEDIATELY = False
    limited("7:b")
    assert tasks.run_next_task()
    assert Execution.objects.filter(task_name="limited").count() == 2
