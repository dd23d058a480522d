"""Following and steering a task after it was queued: find, cancel, retry, and
what a running task knows about itself.

Every change here is a fenced, single-row write, so it is safe against a
worker that claims, finishes or recovers the same task at the same moment.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils import timezone

from background_task.core import current
from background_task.core.progress import Progress, make_progress, merge_meta
from background_task.store.models import BaseTask, CompletedTask, Task, find_task

CANCEL_CHECK_INTERVAL = 0.2  # seconds a running task's cancel_requested answer is reused


def get_result(task_id: str, using: str | None = None) -> Task | CompletedTask:
    """The task with this id, pending, running or finished, as a handle
    (``status``, ``ready``, ``result``, ``error``, ``wait()``, ``cancel()``...).

    Raises :class:`~background_task.core.exceptions.TaskNotFound` if there is none.
    """
    return find_task(task_id, using=using)


def cancel(task: BaseTask, force: bool = False) -> bool:
    """Cancel a task (see :meth:`BaseTask.cancel <background_task.models.BaseTask.cancel>`).

    - waiting: it moves to the history as ``cancelled`` and never runs; True;
    - running: it is asked to stop (``current_task().cancel_requested``
      turns True); with ``force=True`` the supervisor of the process running
      it kills that process and records the run as cancelled; True;
    - finished: nothing changes; False, and the log says so.
    """
    return task.cancel(force=force)


def retry(task: BaseTask) -> Task:
    """Queue a failed or cancelled task again, due now, under the same task id.

    Raises ValueError for a task that is still pending or succeeded.
    """
    return task.retry()


@dataclass
class CurrentTask:
    """What a running task can learn about its own run (see :func:`current_task`)."""

    task: Task
    using: str
    #: The run is a coroutine on a worker's event loop: the worker looks for
    #: cancellations and sets :attr:`cancel_requested` (no query in async code).
    in_loop: bool = False
    #: Called after each report; the worker's writer stores it on the row,
    #: throttled. Whatever was reported last is stored when the run ends.
    on_report: Callable[[CurrentTask], None] | None = None
    clock: Callable[[], datetime] = field(default=timezone.now, repr=False)
    _checked_at: float = field(default=float("-inf"), repr=False)
    _requested: bool = field(default=False, repr=False)

    @property
    def task_id(self) -> str:
        return self.task.task_id

    @property
    def attempt(self) -> int:
        """1 on the first run, 2 on the first retry, ..."""
        return self.task.attempts + 1

    @property
    def cancel_requested(self) -> bool:
        """True once someone called ``cancel()`` on this task; a long task
        checks it now and then and returns early. Read from the database at
        most every 0.2 s."""
        if self._requested or self.in_loop:
            return self._requested
        now = time.monotonic()
        if now - self._checked_at >= CANCEL_CHECK_INTERVAL:
            self._checked_at = now
            self._requested = (
                Task.objects.using(self.using)
                .filter(pk=self.task.pk, cancel_requested=True)
                .exists()
            )
        return self._requested

    def set_progress(
        self, done: float, total: float | None = None, message: str | None = None
    ) -> None:
        """Report how far the task has got: ``done`` of ``total`` (when known)
        and a short message. Cheap to call in a loop: the row is written at
        most every BACKGROUND_TASK_PROGRESS_INTERVAL seconds (and at the end).
        ValueError or TypeError names a bad value."""
        self.task.progress_json = make_progress(done, total, message, now=self.clock()).as_json()
        if self.on_report is not None:
            self.on_report(self)

    def update_meta(self, **values: Any) -> None:
        """Merge JSON ``values`` into the task's metadata (``handle.meta``),
        stored like progress. TypeError names a value JSON cannot hold."""
        self.task.meta_json = merge_meta(self.task.meta_json, values)
        if self.on_report is not None:
            self.on_report(self)

    @property
    def progress(self) -> Progress | None:
        """The progress this run reported last (or an earlier attempt left), or None."""
        return self.task.progress

    @property
    def meta(self) -> dict[str, Any]:
        """The task's metadata so far."""
        return self.task.meta

    def note_cancel_requested(self) -> None:
        """Record that the task was cancelled (the worker of an async run calls this)."""
        self._requested = True


def current_task() -> CurrentTask | None:
    """The task this code runs in, or None outside a task run by a worker."""
    found: CurrentTask | None = current.current_task()
    return found


set_current = current.set_current
reset_current = current.reset_current
