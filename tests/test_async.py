"""``async def`` tasks run to completion wherever a task runs: never recorded
as done without their body having run.

Each entry point has a test: a real worker process, the in-process worker
loop, eager mode, ``.now()`` (from sync code and inside a running event
loop), ``run_task`` by name, and every decorator (``@background``,
``@periodic_task``, ``@cron_task``, ``delayed_task``). The django.tasks
backend's async functions are tested in ``test_django_tasks.py``. Then the
awaitable twins for async callers (``aenqueue``, ``aget_result``,
``arefresh``, ``acancel``, ``aretry``, ``wait_async``), in process and from
async views under a real uvicorn.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync

import background_task
from background_task import status
from background_task.api.registry import Tasks
from background_task.models import CompletedTask, Task
from background_task.runtime.worker import Worker
from background_task.testing import run_immediately
from tests.conftest import ROOT, drain, subprocess_env, wait_until
from tests.scratch_servers import free_port
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
    worker.settle()
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
    worker.settle()
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


# -- the awaitable API ------------------------------------------------------------------


def test_the_awaitable_twins_queue_read_wait_cancel_and_retry(clock):
    async def queue() -> tuple[str, str]:
        task = await fixtures.add.aenqueue(2, 3, schedule=0)
        handle = await background_task.aget_result(task.task_id)
        assert (handle.status, handle.task_id) == (status.WAITING, task.task_id)
        other = await background_task.aenqueue("tests.testapp.tasks.add", 1, 1, schedule=0)
        assert await other.acancel() is True
        return task.task_id, other.task_id

    task_id, cancelled_id = async_to_sync(queue)()
    drain(clock)

    async def read() -> tuple[object, str, str]:
        handle = await background_task.aget_result(task_id)
        await handle.wait_async(timeout=5)
        cancelled = await background_task.aget_result(cancelled_id)
        state = cancelled.status
        again = await cancelled.aretry()
        await again.arefresh()
        return handle.result, state, again.status

    assert async_to_sync(read)() == (5, status.CANCELLED, status.WAITING)


def test_wait_async_gives_up_after_its_timeout():
    task = fixtures.add(1, 2)  # due in a minute; nobody runs it

    async def wait() -> None:
        handle = await background_task.aget_result(task.task_id)
        await handle.wait_async(timeout=0.2, interval=0.05)

    with pytest.raises(TimeoutError, match=r"is still waiting after 0\.2s"):
        async_to_sync(wait)()


def _get(url: str, timeout: float = 30) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def test_the_awaitable_api_under_a_real_asgi_server(start_worker):
    pytest.importorskip("uvicorn")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.asgi:application", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}/async"

        def up() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            except OSError:
                return server.poll() is not None  # stop waiting if it died
            return True

        wait_until(up, timeout=30)
        assert server.poll() is None, server.communicate()[0]
        queued = _get(f"{base}/enqueue/?a=2&b=5")
        assert queued["status"] == status.WAITING
        # The server awaits the result without blocking while a worker runs it.
        waited: dict[str, Any] = {}
        waiter = threading.Thread(
            target=lambda: waited.update(_get(f"{base}/result/{queued['task_id']}/?timeout=30"))
        )
        waiter.start()
        spare = fixtures.add(9, 9, schedule=3600)
        assert _get(f"{base}/cancel/{spare.task_id}/") == {
            "cancelled": True,
            "status": status.CANCELLED,
        }  # served while the other request waits
        code, output = start_worker("--burst").wait()
        assert code == 0, output
        waiter.join(30)
        assert waited == {"status": status.DONE, "result": 7}
    finally:
        server.terminate()
        server.wait(10)
