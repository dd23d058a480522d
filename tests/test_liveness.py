"""Worker rows, heartbeats, orphan recovery and claim-token fencing (in process)."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest
from django.db.models import F
from django.test import override_settings

from background_task import status
from background_task.api.registry import tasks as registry
from background_task.core.exceptions import ClaimLost
from background_task.models import CompletedTask, Task, WorkerProcess
from background_task.runtime.execution import TaskExecutor
from background_task.runtime.liveness import Liveness, recover_orphans
from background_task.runtime.worker import Worker
from tests.testapp import tasks as fixtures

pytestmark = pytest.mark.django_db(transaction=True)

DEAD = "elsewhere:4242:deadbeef"


def held_by(worker_id: str, make=fixtures.noop, **options) -> Task:
    """A task claimed by ``worker_id``, as a real claim leaves it."""
    task = make(schedule=0, **options)
    claimed = task.lock(worker_id)
    assert claimed is not None
    return claimed


def register(worker_id: str, silent_for: float = 0.0) -> WorkerProcess:
    Liveness(worker_id).register()
    WorkerProcess.objects.filter(worker_id=worker_id).update(
        heartbeat_at=F("heartbeat_at") - timedelta(seconds=silent_for)
    )
    return WorkerProcess.objects.get(worker_id=worker_id)


def recoverer(clock) -> TaskExecutor:
    return TaskExecutor(registry, "recoverer:1:00000000", clock=clock)


def test_a_worker_registers_heartbeats_and_leaves_no_row():
    liveness = Liveness("here:1:aaaaaaaa", queues=["a", None], concurrency=4)
    liveness.register()
    row = WorkerProcess.objects.get()
    assert (row.kind, row.queues, row.concurrency) == ("worker", ["a", None], 4)
    assert row.version and row.pid and row.host
    WorkerProcess.objects.update(heartbeat_at=F("heartbeat_at") - timedelta(seconds=60))
    liveness.beat()
    assert WorkerProcess.objects.alive(10).count() == 1
    liveness.unregister()
    assert not WorkerProcess.objects.exists()


def test_a_long_recovery_keeps_the_recovering_worker_s_heartbeats_going(clock):
    """Settling many orphans one by one takes a while; the heartbeat thread
    beats between them once an interval has passed, so the recovering worker
    is never silent for longer than its recovery of one task (it would
    otherwise fence itself, and be presumed lost, mid-recovery)."""
    for _ in range(6):
        held_by(DEAD)
    register(DEAD, silent_for=60)
    beats = []
    liveness = Liveness("here:1:dddddddd", executor=recoverer(clock), on_renewed=beats.append)
    liveness.register()
    liveness.lost_after = 30
    liveness._healthy_since = time.monotonic() - 60  # trusted: it has heartbeaten long enough
    liveness.interval = 0.0  # every recovered task is an interval
    liveness.tick()
    assert Task.objects.filter(locked_by=DEAD).count() == 0  # all six recovered
    # register, the tick's own beat, then one after each recovered task
    assert len(beats) == 1 + 1 + 6
    assert beats == sorted(beats)
    liveness.interval = 3600.0  # a pulse within the interval sends nothing
    liveness.pulse()
    assert len(beats) == 8


def test_a_worker_whose_row_was_removed_registers_again():
    liveness = Liveness("here:1:bbbbbbbb")
    liveness.register()
    WorkerProcess.objects.all().delete()
    liveness.beat()
    assert WorkerProcess.objects.get().worker_id == "here:1:bbbbbbbb"


def test_the_worker_loop_registers_while_it_runs(clock):
    seen = []
    fixtures.noop(schedule=0)

    def watch(**kwargs):
        seen.extend(WorkerProcess.objects.values_list("worker_id", flat=True))

    from background_task.signals import task_started

    task_started.connect(watch)
    try:
        worker = Worker(clock=clock, sleep=0.01, burst=True)
        worker.run()
    finally:
        task_started.disconnect(watch)
    assert seen == [worker.worker_id]
    assert not WorkerProcess.objects.exists()


def test_tasks_of_a_lost_worker_are_retried_with_the_attempt_counted(clock):
    task = held_by(DEAD)
    register(DEAD, silent_for=60)
    assert recover_orphans(recoverer(clock), clock.now, lost_after=30) == 1
    row = Task.objects.get(pk=task.pk)
    assert (row.status, row.locked_by, row.claim_token, row.attempts) == (
        status.WAITING,
        None,
        None,
        1,
    )
    assert row.run_at > clock.now  # with backoff
    [error] = row.errors
    assert error["exception_class_path"] == "background_task.exceptions.WorkerLost"
    assert error["worker_id"] == DEAD and "no heartbeat" in error["message"]
    assert row.worker_ids == [DEAD]
    assert not WorkerProcess.objects.exists()  # the lost worker's row is cleaned up


def test_on_worker_lost_fail_never_runs_the_task_again(clock):
    task = held_by(DEAD, make=fixtures.at_most_once, seconds=0)
    assert task.on_worker_lost == "fail"
    register(DEAD, silent_for=60)
    recover_orphans(recoverer(clock), clock.now, lost_after=30)
    assert not Task.objects.exists()
    completed = CompletedTask.objects.get()
    assert (completed.task_id, completed.status, completed.attempts) == (
        task.task_id,
        status.ERROR,
        1,
    )
    assert "WorkerLost" in completed.last_error


@override_settings(BACKGROUND_TASK_ON_WORKER_LOST="fail")
def test_the_setting_is_the_default_policy(clock):
    held_by(DEAD)
    register(DEAD, silent_for=60)
    recover_orphans(recoverer(clock), clock.now, lost_after=30)
    assert CompletedTask.objects.get().status == status.ERROR


def test_a_heartbeating_worker_keeps_its_task_however_long_it_runs(clock):
    task = held_by("alive:1:cccccccc")
    register("alive:1:cccccccc")
    clock.advance(10 * 3600)  # far past MAX_RUN_TIME
    assert recover_orphans(recoverer(clock), clock.now, lost_after=30) == 0
    assert Task.objects.get(pk=task.pk).locked_by == "alive:1:cccccccc"


def test_claims_of_unregistered_processes_expire_after_max_run_time(clock):
    task = held_by("1234")  # a 1.2.8 worker: a bare pid and no row
    assert recover_orphans(recoverer(clock), clock.now, lost_after=None) == 0
    clock.advance(3601)
    assert recover_orphans(recoverer(clock), clock.now, lost_after=None) == 1
    row = Task.objects.get(pk=task.pk)
    assert (row.status, row.attempts) == (status.WAITING, 1)
    assert "expired after MAX_RUN_TIME" in row.last_error


def test_without_a_heartbeat_of_its_own_nobody_is_judged_lost(clock):
    held_by(DEAD)
    register(DEAD, silent_for=3600)
    assert recover_orphans(recoverer(clock), clock.now, lost_after=None) == 0


def test_a_lost_worker_that_comes_back_changes_nothing(clock):
    task = held_by(DEAD)
    register(DEAD, silent_for=60)
    recover_orphans(recoverer(clock), clock.now, lost_after=30)
    zombie = TaskExecutor(registry, DEAD, clock=clock)
    # Its late success and its late failure are both fenced off.
    assert zombie.persist(lambda: zombie.record_success(task, "42")) == "lost"
    assert zombie.persist(lambda: zombie.record_failure(task, ValueError("late"))) == "lost"
    assert not zombie.release(task)
    row = Task.objects.get(pk=task.pk)
    assert (row.status, row.attempts, len(row.errors)) == (status.WAITING, 1, 1)
    assert not CompletedTask.objects.exists()


def test_two_recoverers_settle_an_attempt_once(clock):
    task = held_by(DEAD)
    copy = Task.objects.get(pk=task.pk)  # what a second recoverer read
    recoverer(clock).record_lost(task, RuntimeError("lost"))
    with pytest.raises(ClaimLost):
        recoverer(clock).record_lost(copy, RuntimeError("lost"))
    # The settled object itself has no token left, and matches nothing either.
    assert task.claim_token is None
    with pytest.raises(ClaimLost):
        recoverer(clock).record_lost(task, RuntimeError("lost"))
    assert Task.objects.get(pk=task.pk).attempts == 1


def test_recovery_waits_until_its_own_heartbeats_have_flowed_for_the_threshold(clock):
    held_by(DEAD)
    register(DEAD, silent_for=60)
    with override_settings(
        BACKGROUND_TASK_HEARTBEAT_INTERVAL=0.1, BACKGROUND_TASK_WORKER_LOST_AFTER=0.5
    ):
        liveness = Liveness("judge:1:dddddddd", executor=recoverer(clock))
        liveness.register()
        liveness.tick()  # just (re)connected: it trusts nobody's silence yet
        assert Task.objects.get().status == status.RUNNING
        time.sleep(0.6)
        liveness.tick()
    assert Task.objects.get().status == status.WAITING


def test_a_worker_with_an_orphaned_parent_stops(clock):
    stopped = []
    liveness = Liveness("child:1:eeeeeeee", parent_pid=-1, on_orphaned=lambda: stopped.append(1))
    liveness.register()
    liveness.tick()
    liveness.tick()
    assert stopped == [1]


@pytest.mark.parametrize("value", ["never", "", 1, True])
def test_on_worker_lost_is_validated_at_decoration_time(value):
    with pytest.raises(ValueError, match="on_worker_lost must be 'retry'"):
        registry.background(on_worker_lost=value)


def test_timeout_and_on_worker_lost_can_be_set_per_call():
    task = fixtures.noop(timeout=2.5, on_worker_lost="fail")
    assert (task.timeout, task.on_worker_lost) == (2.5, "fail")
    assert task.params() == ([], {})
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        fixtures.noop(timeout=0)


needs_proc = pytest.mark.skipif(
    not os.path.exists("/proc/self/cmdline"), reason="processes are looked up in /proc"
)


def started(args: list[str]):
    """Popen ``args`` and wait until the child runs them: between fork and
    exec, /proc shows the parent's command line."""
    import subprocess

    process = subprocess.Popen(args)
    wanted = "\0".join(args).encode()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{process.pid}/cmdline", "rb") as cmdline:
            if cmdline.read().rstrip(b"\0") == wanted:
                return process
        time.sleep(0.01)
    raise AssertionError(f"{args} did not start")


@pytest.fixture
def lookalike():
    """A live process on this host whose command line names process_tasks."""
    import sys

    process = started([sys.executable, "-c", "import time; time.sleep(60)", "process_tasks"])
    yield process
    process.kill()
    process.wait()


@needs_proc
def test_a_silent_worker_whose_process_runs_on_this_host_keeps_its_tasks(clock, lookalike):
    from background_task.runtime.liveness import STALL_LIMIT

    worker_id = f"here:{lookalike.pid}:dddddddd"
    task = held_by(worker_id)
    register(worker_id, silent_for=60)
    WorkerProcess.objects.filter(worker_id=worker_id).update(pid=lookalike.pid)
    assert recover_orphans(recoverer(clock), clock.now, lost_after=30) == 0
    assert Task.objects.get(pk=task.pk).locked_by == worker_id
    assert WorkerProcess.objects.filter(worker_id=worker_id).exists()
    # Silent for too long, its tasks are recovered all the same.
    register(worker_id, silent_for=STALL_LIMIT * 30 + 60)
    WorkerProcess.objects.filter(worker_id=worker_id).update(pid=lookalike.pid)
    assert recover_orphans(recoverer(clock), clock.now, lost_after=30) == 1


def test_a_silent_worker_on_another_host_is_judged_by_its_heartbeats(clock, lookalike):
    worker_id = f"elsewhere:{lookalike.pid}:eeeeeeee"
    held_by(worker_id)
    register(worker_id, silent_for=60)
    WorkerProcess.objects.filter(worker_id=worker_id).update(pid=lookalike.pid, host="elsewhere")
    assert recover_orphans(recoverer(clock), clock.now, lost_after=30) == 1


@needs_proc
def test_a_dead_process_or_another_program_is_no_running_worker(lookalike):
    import sys

    from background_task.runtime.liveness import running_worker

    assert running_worker(lookalike.pid)
    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    other = started(sleep)
    mentions = started([*sleep, "tests/test_process_tasks.py", "process_tasks.log"])
    embedded = started([*sleep, "-m", "background_task._embedded"])
    try:
        assert not running_worker(other.pid)
        assert not running_worker(mentions.pid)  # names it, but is no worker
        assert running_worker(embedded.pid)  # BACKGROUND_TASK_AUTOSTART's worker
    finally:
        for process in (other, mentions, embedded):
            process.kill()
            process.wait()
    assert not running_worker(other.pid)  # reaped: gone
