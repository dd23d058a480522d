"""1.2.8's ``DBTaskRunner`` and the in-process ``run_task`` / ``run_next_task``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from background_task.api import inprocess
from background_task.api.eager import eager, run_in_process
from background_task.core.signals import task_created

if TYPE_CHECKING:
    from background_task.api.registry import Tasks
    from background_task.store.models import Task


class DBTaskRunner:
    """Stores task rows for calls of task proxies (1.2.8 API)."""

    @functools.cached_property
    def _schedule_task(self) -> Callable[..., Task | None]:
        # Imported at the first call, once the apps are loaded (enqueueing
        # needs the models; a task module may be imported before that), and
        # then kept: an import statement per call was a few per cent of an enqueue.
        from background_task.api.enqueue import schedule_task

        return schedule_task

    def schedule(self, task_name: str, args: Any, kwargs: Any, **options: Any) -> Task | None:
        """Store one call (see :func:`background_task.api.enqueue.schedule_task`) and
        send ``task_created`` for a new row."""
        task = self._schedule_task(task_name, args, kwargs, **options)
        if task is not None:
            task_created.send(sender=DBTaskRunner, task=task)
            if eager():
                run_in_process(task)
        return task


def run_next_task(registry: Tasks, queue: str | None = None) -> bool:
    """Claim and run one due task in this process; True if one ran."""
    return inprocess.runner.get().run_next(registry, queue)


def run_task(registry: Tasks, task: Task | str, args: Any = None, kwargs: Any = None) -> None:
    """Run a stored Task (claimed first, outcome recorded), or a task by name.

    By name the function is simply called with ``args`` and ``kwargs``;
    unlike 1.2.8 no queued row with the same arguments is touched.
    """
    inprocess.runner.get().run_task(registry, task, args, kwargs)
