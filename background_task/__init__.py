"""django-background-task: a database-backed task queue for Django.

Importing this package touches neither settings nor models, so it is safe in
settings files and at the top of any module.
"""

from __future__ import annotations

from typing import Any

from background_task.core.exceptions import Retry, TaskCancelled
from background_task.core.status import CANCELLED, DONE, ERROR, RUNNING, WAITING
from background_task.core.version import __version__

__all__ = [
    "CANCELLED",
    "DONE",
    "ERROR",
    "RUNNING",
    "WAITING",
    "Retry",
    "TaskCancelled",
    "__version__",
    "aenqueue",
    "aget_result",
    "background",
    "call",
    "chain",
    "cron_task",
    "current_task",
    "delayed_task",
    "enqueue",
    "get_result",
    "get_workflow",
    "group",
    "pause_queue",
    "paused_queues",
    "periodic_task",
    "queue_immediately",
    "resume_queue",
]


def background(*args: Any, **kwargs: Any) -> Any:
    """Turn a function into a background task (see ``Tasks.background``).

    Usable bare (``@background``) or with options
    (``@background(schedule=60, queue="emails")``).
    """
    from background_task.api.registry import tasks

    return tasks.background(*args, **kwargs)


def delayed_task(*args: Any, **kwargs: Any) -> Any:
    """autotask's spelling of ``background``: ``@delayed_task(delay=0, retries=0, ttl=300)``."""
    from background_task.api.registry import tasks

    return tasks.delayed_task(*args, **kwargs)


def enqueue(task_name: str, *args: Any, **kwargs: Any) -> Any:
    """Queue a call of a task by its name: ``enqueue("app.tasks.send_report", 42, queue="low")``.

    Raises TaskNotRegistered for a name no installed app's ``tasks`` module defines.
    """
    from background_task.api.registry import tasks

    return tasks.enqueue(task_name, *args, **kwargs)


def get_result(task_id: str) -> Any:
    """The task with this id, pending, running or finished (a handle: ``status``,
    ``ready``, ``result``, ``error``, ``wait()``, ``cancel()``, ``retry()``).

    Raises TaskNotFound when there is none.
    """
    from background_task.api.control import get_result as find

    return find(task_id)


def pause_queue(queue: str | None, *, reason: str = "") -> bool:
    """Pause a queue (None: the default queue): within a second no worker
    claims its tasks; queueing still works and running tasks finish. False
    if it was paused already."""
    from background_task.api.queues import pause_queue as pause

    return pause(queue, reason=reason)


def resume_queue(queue: str | None) -> bool:
    """Resume a paused queue; False if it was not paused."""
    from background_task.api.queues import resume_queue as resume

    return resume(queue)


def paused_queues() -> list[Any]:
    """The paused queues (``PausedQueue`` rows: ``name``, ``paused_at``, ``reason``)."""
    from background_task.api.queues import paused_queues as paused

    return paused()


async def aenqueue(task_name: str, *args: Any, **kwargs: Any) -> Any:
    """``enqueue()`` for async code: ``await aenqueue("app.tasks.send_report", 42)``."""
    from asgiref.sync import sync_to_async

    return await sync_to_async(enqueue, thread_sensitive=True)(task_name, *args, **kwargs)


async def aget_result(task_id: str) -> Any:
    """``get_result()`` for async code: ``handle = await aget_result(task_id)``."""
    from asgiref.sync import sync_to_async

    return await sync_to_async(get_result, thread_sensitive=True)(task_id)


def current_task() -> Any:
    """Inside a running task: its ``task_id``, ``attempt`` and
    ``cancel_requested``, and ``set_progress()`` / ``update_meta()`` to report
    how far it has got; None elsewhere."""
    from background_task.api.control import current_task as current

    return current()


def periodic_task(*args: Any, **kwargs: Any) -> Any:
    """Register a task that runs every ``seconds`` seconds (see ``Tasks.periodic_task``).

    ``@periodic_task(seconds=3600, start_now=False, queue=None, priority=0)``.
    """
    from background_task.api.registry import tasks

    return tasks.periodic_task(*args, **kwargs)


def cron_task(*args: Any, **kwargs: Any) -> Any:
    """Register a task that runs on a crontab or an rrule (see ``Tasks.cron_task``).

    ``@cron_task("0 5 * * tue")``, ``@cron_task(minutes=[0, 30], hours=9)`` or
    ``@cron_task(rrule="FREQ=MONTHLY;BYMONTHDAY=-1;BYHOUR=23")``.
    """
    from background_task.api.registry import tasks

    return tasks.cron_task(*args, **kwargs)


def chain(*steps: Any) -> Any:
    """A workflow of ``steps`` run one after the other (``task.s()`` steps
    receive the previous result); ``.start()`` queues it. See docs/workflows.md."""
    from background_task.api.workflows import chain as make_chain

    return make_chain(*steps)


def group(*members: Any, then: Any = None, on_failure: Any = None) -> Any:
    """A workflow of ``members`` run at once, ``then`` after all succeeded,
    ``on_failure`` if one failed for good; ``.start()`` queues it."""
    from background_task.api.workflows import group as make_group

    return make_group(*members, then=then, on_failure=on_failure)


def get_workflow(workflow_id: str) -> Any:
    """The started workflow with this id (its handle: ``status``, ``results``,
    ``tasks()``, ``wait()``, ``cancel()``)."""
    from background_task.api.workflows import get_workflow as find

    return find(workflow_id)


def call(*args: Any, **kwargs: Any) -> Any:
    """Capture one call's arguments for ``task.bulk(...)``."""
    from background_task.api.enqueue import call as make_call

    return make_call(*args, **kwargs)


def __getattr__(name: str) -> Any:
    # TaskProxy is re-exported lazily so that importing the package stays cheap.
    if name == "TaskProxy":
        from background_task.api.proxy import TaskProxy

        return TaskProxy
    raise AttributeError(f"module 'background_task' has no attribute {name!r}")


def queue_immediately() -> Any:
    """A context manager: tasks queued inside it are stored at once, even inside
    a transaction on a database other than the queue's, which would otherwise
    delay them to its commit (see docs/scaling.md)."""
    from background_task.store.routing import queue_immediately as immediately

    return immediately()
