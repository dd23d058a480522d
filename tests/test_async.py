"""``async def`` tasks run to completion wherever a task runs: never recorded
as done without their body having run.

Each entry point has a test: a real worker process, the in-process worker
loop, eager mode, ``.now()`` (from sync code and inside a running event
loop), ``run_task`` by name, and every decorator (``@background``,
``@periodic_task``, ``@cron_task``, ``delayed_task``). The django.tasks
backend's async functions are tested in ``test_django_tasks.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from background_task import status
from background_task.api.registry import Tasks
from background_task.models import CompletedTask, Task
from background_task.runtime.worker import Worker
from background_task.testing import run_immediately
from tests.conftest import drain
from tests.testapp import tasks as fixtures
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_real_worker_runs_async_tasks_to_completion(start_worker):
    first, second = fixtures.async_record("a"), fixtures.async_record("b")
    code, output = start_worker("--burst").wait()
    assert code == 0, output
    # The bodies ran (each wrote its row through the async ORM, after an await)...
    assert sorted(Execution.objects.values_list("key", flat=True)) == ["a", "b"]
    # ...and the results are theirs, not the None of an unawaited coroutine.
    assert [first.refresh().result, second.refresh().result] == ["a", "b"]
    assert {first.status, second.status} == {status.DONE}


def test_the_in_process_loop_runs_them_and_current_task_is_known(clock):
    task = fixtures.async_current()
    drain(clock)
    done = CompletedTask.objects.get(task_id=task.task_id)
    assert done.status == status.DONE
    assert done.result == [task.task_id, 1]


def test_a_sync_orm_call_inside_an_async_task_fails_with_djangos_error(clock):
    task = fixtures.async_sync_orm()
    worker = Worker(clock=clock, sleep=0.01)
    assert worker.step() == 1
    row = Task.objects.get(task_id=task.task_id)  # rescheduled, as any failure is
    assert row.attempts == 1
    assert row.errors[0]["exception_class_path"] == (
        "django.core.exceptions.SynchronousOnlyOperation"
    )


def test_eager_mode_runs_them():
    with run_immediately():
        task = fixtures.async_record("eager")
    assert task.status == status.DONE and task.result == "eager"
    assert Execution.objects.get().key == "eager"


def test_now_runs_them_from_sync_code():
    assert fixtures.async_record.now("now") == "now"
    assert Execution.objects.get().key == "now"


def test_now_runs_them_inside_a_running_event_loop():
    registry = Tasks()

    @registry.background
    async def double(value: int) -> int:
        await asyncio.sleep(0)
        return 2 * value

    async def caller() -> int:
        # A blocking call inside the loop: it must neither deadlock nor
        # hand back a coroutine.
        return double.now(21)  # type: ignore[no-any-return]

    assert asyncio.run(caller()) == 42


def _background(registry: Tasks) -> Callable[..., Any]:
    return registry.background(name="async.background")


def _periodic(registry: Tasks) -> Callable[..., Any]:
    return registry.periodic_task(seconds=60, name="async.periodic")


def _cron(registry: Tasks) -> Callable[..., Any]:
    return registry.cron_task("0 5 * * *", name="async.cron")


def _delayed(registry: Tasks) -> Callable[..., Any]:
    return registry.delayed_task(delay=0, retries=0, ttl=60)


@pytest.mark.parametrize("decorate", [_background, _periodic, _cron, _delayed])
def test_every_decorator_runs_async_functions(decorate, clock):
    registry = Tasks()
    calls: list[int] = []

    async def job(value: int) -> int:
        await asyncio.sleep(0)
        calls.append(value)
        return value

    proxy = decorate(registry)(job)
    task = proxy(7)
    worker = Worker(registry=registry, clock=clock, sleep=0.01)
    assert worker.step() == 1
    assert calls == [7]
    assert CompletedTask.objects.get(task_id=task.task_id).status == status.DONE


def test_run_task_by_name_runs_them():
    registry = Tasks()
    calls: list[int] = []

    @registry.background(name="async.by_name")
    async def job(value: int) -> None:
        await asyncio.sleep(0)
        calls.append(value)

    registry.run_task("async.by_name", args=[3])
    assert calls == [3]


def test_stored_arguments_that_do_not_fit_fail_for_good(clock):
    task = fixtures.async_record("a", "unexpected")
    drain(clock)
    done = CompletedTask.objects.get(task_id=task.task_id)
    assert done.status == status.ERROR
    assert done.error["exception_class_path"] == "background_task.exceptions.BadTaskRow"
