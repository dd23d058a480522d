"""1.2.8's ``DBTaskRunner`` and the in-process ``run_task``.

The registry's runner is ``tasks._runner``, as in 1.2.8: ``tasks.run_next_task()``
goes through its ``get_task_to_run`` and ``run_task``, and every task decorated
by the registry stores its calls through its ``schedule``, so a project's
subclass that overrides them is honoured there.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.db import OperationalError

from background_task.api import inprocess
from background_task.api.eager import eager, run_in_process
from background_task.core.legacy_log import tasks_logger
from background_task.core.signals import task_created
from background_task.store.ids import make_worker_id

if TYPE_CHECKING:
    from background_task.api.registry import Tasks
    from background_task.store.models import Task


class DBTaskRunner:
    """Stores task rows for calls of task proxies, and claims and runs tasks in
    this process (1.2.8 API)."""

    def __init__(self) -> None:
        #: What this runner's claims write into ``locked_by`` (``host:pid:random``;
        #: 1.2.8 wrote the pid).
        self.worker_name = make_worker_id()

    @functools.cached_property
    def _schedule_task(self) -> Callable[..., Task | None]:
        # Imported at the first call, once the apps are loaded (enqueueing
        # needs the models; a task module may be imported before that), and
        # then kept: an import statement per call was a few per cent of an enqueue.
        from background_task.api.enqueue import schedule_task

        return schedule_task

    def schedule(self, task_name: str, args: Any, kwargs: Any, **options: Any) -> Task | None:
        """Store one call (see :func:`background_task.api.enqueue.schedule_task`) and
        send ``task_created`` for a new row (not for a unique task's waiting twin)."""
        return self._schedule_task(task_name, args, kwargs, announce=self._announce, **options)

    def _announce(self, task: Task) -> None:
        """A new row was stored (at once, or at the commit that queued it)."""
        task_created.send(sender=type(self), task=task)
        if eager():
            run_in_process(task)

    def get_task_to_run(self, tasks: Tasks, queue: str | None = None) -> Task | None:
        """Claim one due task that ``tasks`` can run (of ``queue``, if given) for
        :attr:`worker_name` and return it; None when there is none.

        A task whose lock expired (MAX_RUN_TIME) with no registered worker
        behind it is taken over, fenced. A database that cannot be reached
        logs a warning on ``background_task.tasks.logger`` and gives None.
        """
        # Imported at the first call: it needs the models.
        from background_task.store.claim.single import claim_one

        try:
            return claim_one(self.worker_name, tasks.names(), queue)
        except OperationalError:
            tasks_logger().warning("Failed to retrieve tasks. Database unreachable.")
            return None

    def run_task(self, tasks: Tasks, task: Task) -> None:
        """Run a task this runner claimed, as a worker would, recording the outcome."""
        tasks.run_task(task)

    def run_next_task(self, tasks: Tasks, queue: str | None = None) -> bool:
        """Claim one due task and run it here; True if one ran."""
        task = self.get_task_to_run(tasks, queue)
        if task is None:
            return False
        self.run_task(tasks, task)
        return True


def run_task(registry: Tasks, task: Task | str, args: Any = None, kwargs: Any = None) -> None:
    """Run a stored Task (claimed first unless it holds a claim; outcome
    recorded), or a task by name.

    By name the function is simply called with ``args`` and ``kwargs``;
    unlike 1.2.8 no queued row with the same arguments is touched.
    """
    inprocess.runner.get().run_task(registry, task, args, kwargs)


def custom_runner(registry: Tasks) -> DBTaskRunner | None:
    """The registry's runner if a project's subclass overrides how a task is
    claimed or run (``get_task_to_run``, ``run_task``, ``run_next_task``); else None."""
    runner = getattr(registry, "_runner", None)
    if runner is None:
        return None
    overridden = any(
        getattr(type(runner), name, None) is not getattr(DBTaskRunner, name)
        for name in ("get_task_to_run", "run_task", "run_next_task")
    )
    return runner if overridden else None
