"""Running tasks in the calling process, through a worker's executor.

What eager mode (``run_immediately``) and 1.2.8's ``run_task`` /
``run_next_task`` do. The task API asks for it through
:data:`background_task.api.inprocess.runner`; importing this module
registers :data:`IN_PROCESS` there (the app's ``ready()`` does).
"""

from __future__ import annotations

import logging
from typing import Any

from background_task.api import inprocess
from background_task.api.registry import Tasks
from background_task.api.registry import tasks as default_registry
from background_task.core.coroutines import run_to_completion
from background_task.runtime.worker import Worker
from background_task.store.models import Task

logger = logging.getLogger("background_task.tasks")


class WorkerInProcess:
    """Runs tasks here, as a worker with this process's settings would."""

    def run_stored(self, task: Task) -> Task:
        """Claim a just-queued task, run it, and return it refreshed."""
        using = task._state.db or "default"
        worker = Worker(registry=default_registry, using=using)
        row = task if task.pk is not None else Task.objects.using(using).get(task_id=task.task_id)
        claimed = row.lock(worker.worker_id)
        if claimed is not None:
            worker.executor.execute(claimed)
        task.refresh()
        return task

    def run_next(self, registry: Tasks, queue: str | None) -> bool:
        """Claim and run one due task of ``queue`` (None: any); True if one ran."""
        worker = Worker(queues=[queue] if queue else None, registry=registry, max_tasks=1)
        return worker.step() > 0

    def run_task(self, registry: Tasks, task: Task | str, args: Any, kwargs: Any) -> None:
        """Run a stored Task (claimed first, outcome recorded), or call a task by name."""
        if isinstance(task, Task):
            worker = Worker(registry=registry)
            claimed = task.lock(worker.worker_id)
            if claimed is None:
                logger.warning("Task %s is held by another worker; not run.", task.task_id)
                return
            worker.executor.execute(claimed)
            return
        run_to_completion(registry.get(task).task_function, *(args or ()), **(kwargs or {}))


IN_PROCESS = inprocess.runner.register(WorkerInProcess())
