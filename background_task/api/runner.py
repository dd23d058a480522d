"""1.2.8's ``DBTaskRunner`` and the in-process ``run_task`` / ``run_next_task``."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from background_task.api.eager import eager, run_in_process
from background_task.core.signals import task_created

if TYPE_CHECKING:
    from background_task.api.registry import Tasks
    from background_task.store.models import Task

logger = logging.getLogger("background_task.tasks")


class DBTaskRunner:
    """Stores task rows for calls of task proxies (1.2.8 API)."""

    @functools.cached_property
    def _schedule_task(self) -> Callable[..., Task | None]:
        # Imported once the apps are loaded (rows needs the models), and then
        # kept: an import statement per call was a few per cent of an enqueue.
        from background_task.api.rows import schedule_task

        return schedule_task

    def schedule(self, task_name: str, args: Any, kwargs: Any, **options: Any) -> Task | None:
        """Store one call (see :func:`background_task.api.rows.schedule_task`) and
        send ``task_created`` for a new row."""
        task = self._schedule_task(task_name, args, kwargs, **options)
        if task is not None:
            task_created.send(sender=DBTaskRunner, task=task)
            if eager():
                run_in_process(task)
        return task


def run_next_task(registry: Tasks, queue: str | None = None) -> bool:
    """Claim and run one due task in this process; True if one ran."""
    from background_task.runtime.worker import Worker

    worker = Worker(queues=[queue] if queue else None, registry=registry, max_tasks=1)
    return worker.step() > 0


def run_task(registry: Tasks, task: Task | str, args: Any = None, kwargs: Any = None) -> None:
    """Run a stored Task (claimed first, outcome recorded), or a task by name.

    By name the function is simply called with ``args`` and ``kwargs``;
    unlike 1.2.8 no queued row with the same arguments is touched.
    """
    from background_task.runtime.worker import Worker
    from background_task.store.models import Task as TaskModel

    if isinstance(task, TaskModel):
        worker = Worker(registry=registry)
        claimed = task.lock(worker.worker_id)
        if claimed is None:
            logger.warning("Task %s is held by another worker; not run.", task.task_id)
            return
        worker.executor.execute(claimed)
        return
    registry.get(task).task_function(*(args or ()), **(kwargs or {}))
