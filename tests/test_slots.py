"""TaskSlots: what a worker process shows its supervisor, in shared memory."""

from __future__ import annotations

import math
import os
import threading
import time

from background_task.runtime.slots import TaskSlots


def test_fresh_slots_are_free_and_never_overdue():
    slots = TaskSlots(3)
    assert slots.owner() is None
    assert slots.running() == []
    assert slots.overdue(now=1e12) is None


def test_a_task_without_a_limit_is_never_overdue():
    slots = TaskSlots(1)
    slots.begin(7, None, now=100.0)
    [running] = slots.running()
    assert (running.pk, running.deadline) == (7, math.inf)
    assert slots.overdue(now=1e12) is None


def test_a_task_is_overdue_once_its_limit_passes_until_its_code_returns():
    slots = TaskSlots(1)
    slots.begin(7, 2.5, now=100.0)
    assert slots.overdue(now=102.0) is None
    assert slots.overdue(now=102.5).pk == 7
    slots.lift_deadline()  # recording the outcome has no limit
    assert slots.overdue(now=1e12) is None and slots.running()[0].pk == 7
    slots.end()
    assert slots.running() == []


def test_each_thread_has_its_own_slot_and_the_earliest_deadline_wins():
    import threading

    slots = TaskSlots(2)
    slots.begin(1, 10, now=0.0)
    thread = threading.Thread(target=slots.begin, args=(2, 5, 0.0))
    thread.start()
    thread.join()
    assert sorted(task.pk for task in slots.running()) == [1, 2]
    assert slots.overdue(now=20).pk == 2


def test_the_supervisor_sees_what_a_forked_child_writes():
    slots = TaskSlots(1)
    pid = os.fork()
    if pid == 0:  # the child
        slots.set_owner("host:123:abcdef01")
        slots.begin(42, 1.0, now=50.0)
        os._exit(0)
    os.waitpid(pid, 0)
    assert slots.owner() == "host:123:abcdef01"
    assert [task.pk for task in slots.running()] == [42]
    assert slots.overdue(now=51.0).pk == 42


def test_a_child_that_began_a_task_is_no_crash_loop_but_one_that_died_young_is():
    from background_task.runtime.supervisor import QUICK_DEATH, Child, Supervisor

    young = Child(process=None, slots=TaskSlots(1), started=100.0)  # type: ignore[arg-type]
    assert not young.slots.begun()
    assert Supervisor._crash_looping(young, now=100.5)
    assert not Supervisor._crash_looping(young, now=100.0 + QUICK_DEATH)  # it lived long enough
    young.slots.begin(1, None, now=100.0)
    young.slots.end()
    assert young.slots.begun()
    assert not Supervisor._crash_looping(young, now=100.5)


def test_a_reader_never_sees_a_running_task_without_its_deadline():
    """The supervisor reads the slots while the worker's threads write them:
    no read may pair a task with a deadline that has passed (a write that
    zeroed its bytes first once made a supervisor kill a worker whose task
    had no time limit)."""
    slots = TaskSlots(2, 4)
    pid = os.fork()
    if pid == 0:  # the worker: threads that begin, lift and end tasks non-stop

        def work(timeout: float | None) -> None:
            until, pk = time.monotonic() + 2, 1
            while time.monotonic() < until:
                slots.begin(pk, timeout, time.monotonic())
                slots.lift_deadline()
                slots.end()
                pk += 1

        threads = [threading.Thread(target=work, args=(t,)) for t in (None, 3600.0)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        os._exit(0)
    seen = 0
    while not os.waitpid(pid, os.WNOHANG)[0]:
        assert slots.overdue(time.monotonic()) is None
        seen += len(slots.running())
    assert seen  # the reads did catch running tasks
