"""Following and steering a task after it was queued: find, cancel, retry, and
what a running task knows about itself.

Every change here is a fenced, single-row write, so it is safe against a
worker that claims, finishes or recovers the same task at the same moment.
"""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass, field

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

    def note_cancel_requested(self) -> None:
        """Record that the task was cancelled (the worker of an async run calls this)."""
        self._requested = True


_current: contextvars.ContextVar[CurrentTask | None] = contextvars.ContextVar(
    "background_task_current", default=None
)


def current_task() -> CurrentTask | None:
    """The task this code runs in, or None outside a task run by a worker."""
    return _current.get()


def set_current(value: CurrentTask | None) -> contextvars.Token[CurrentTask | None]:
    return _current.set(value)


def reset_current(token: contextvars.Token[CurrentTask | None]) -> None:
    _current.reset(token)
