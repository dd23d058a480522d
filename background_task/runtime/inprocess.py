"""Running tasks in the calling process, through a worker's executor.

What eager mode (``run_immediately``) and 1.2.8's ``run_task`` (which
``run_next_task`` ends in) do. The task API asks for it through
:data:`background_task.api.inprocess.runner`; importing this module
registers :data:`IN_PROCESS` there (the app's ``ready()`` does).
"""

from __future__ import annotations

import logging
from typing import Any

from background_task.api import inprocess
from background_task.api.registry import Tasks
from background_task.api.registry import tasks as default_registry
from background_task.core import status
from background_task.core.coroutines import run_to_completion
from background_task.runtime.execution import TaskExecutor
from background_task.store.ids import make_worker_id
from background_task.store.models import Task, WorkerProcess
from background_task.store.routing import queue_alias

logger = logging.getLogger("background_task.tasks")


class WorkerInProcess:
    """Runs tasks here, with the executor a worker uses."""

    def run_stored(self, task: Task) -> Task:
        """Claim a just-queued task, run it, and return it refreshed."""
        using = queue_alias(task._state.db)
        row = task if task.pk is not None else Task.objects.using(using).get(task_id=task.task_id)
        self._run(default_registry, row, using)
        task.refresh()
        return task

    def run_task(self, registry: Tasks, task: Task | str, args: Any, kwargs: Any) -> None:
        """Run a stored Task (claimed first unless it holds a claim), or call a task by name."""
        if isinstance(task, Task):
            if not self._run(registry, task, queue_alias(task._state.db)):
                logger.warning("Task %s is held by another worker; not run.", task.task_id)
            return
        run_to_completion(registry.get(task).task_function, *(args or ()), **(kwargs or {}))

    @staticmethod
    def _run(registry: Tasks, task: Task, using: str) -> bool:
        """Run ``task`` under the claim it holds (``get_task_to_run`` took it),
        else under a new one; False when someone else holds it.

        A claim held by a registered worker (``process_tasks``) is that
        worker's: the task is never run a second time beside it.
        """
        held = task.status == status.RUNNING and task.claim_token is not None and task.locked_by
        if (
            held
            and not WorkerProcess.objects.using(using).filter(worker_id=task.locked_by).exists()
        ):
            claimed: Task | None = task
        else:
            claimed = task.lock(make_worker_id())
        if claimed is None:
            return False
        assert claimed.locked_by is not None
        # Run here and now, as asked: rate and concurrency limits are for workers.
        TaskExecutor(registry, claimed.locked_by, using=using).execute(claimed, limited=False)
        return True


IN_PROCESS = inprocess.runner.register(WorkerInProcess())
