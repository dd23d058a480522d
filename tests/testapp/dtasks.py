"""django.tasks fixtures (Django 6.0+), run through background_task.backends."""

from __future__ import annotations

import asyncio
import threading

import django
from django.tasks import task


@task
def add(a: int, b: int) -> int:
    return a + b


@task(takes_context=True)
def which_attempt(context) -> list:
    return [context.attempt, context.task_result.id]


@task
def explode(message: str) -> None:
    raise RuntimeError(message)


@task(backend="retrying")
def flaky(message: str) -> None:
    raise RuntimeError(message)


@task
async def async_add(a: int, b: int) -> int:
    return a + b


@task(takes_context=True)
async def async_where(context) -> list:
    """Where an async task function runs: the thread (a worker's event loop) and attempt."""
    await asyncio.sleep(0)
    return [threading.current_thread().name, context.attempt]


@task
def returns_object() -> object:
    return object()


@task(queue_name="emails", priority=10)
def send_mail(to: str) -> str:
    return f"sent to {to}"


if django.VERSION >= (6, 1):

    @task(backend="default", max_attempts=2, timeout=1)
    def sleepy(seconds: float) -> None:
        """Overruns its one-second limit; two attempts (Django 6.1 task options)."""
        import time

        time.sleep(seconds)


@task
def sleeps(seconds: float) -> None:
    """Records that it started (an Execution row), then sleeps."""
    import os
    import time

    from tests.testapp.models import Execution

    Execution.objects.create(task_name="dtasks.sleeps", worker_pid=os.getpid())
    time.sleep(seconds)


@task
def reports_progress(steps: int) -> int:
    """A django.tasks function reporting progress through background_task.current_task()."""
    from background_task import current_task

    current = current_task()
    assert current is not None
    for step in range(1, steps + 1):
        current.set_progress(step, steps, f"step {step}")
    current.update_meta(steps=steps)
    return steps
