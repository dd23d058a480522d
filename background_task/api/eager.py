"""Running tasks at once, in process, for tests and debugging (eager mode).

With ``BACKGROUND_TASK_RUN_IMMEDIATELY = True``, or inside
``run_immediately()``, calling a task stores its row as usual and then runs
it right away in the calling process, through the same executor a worker
uses: the result, errors, retries (a failed run is rescheduled with backoff,
not run again at once), history rows and signals are exactly a worker's.
The schedule of the call is ignored: the task runs now.
"""

from __future__ import annotations

import contextvars
from contextlib import ContextDecorator
from typing import TYPE_CHECKING, Any

from background_task.api import inprocess
from background_task.core.conf import app_settings, is_set

if TYPE_CHECKING:
    from background_task.store.models import Task

_override: contextvars.ContextVar[bool | None] = contextvars.ContextVar(
    "background_task_run_immediately", default=None
)


class run_immediately(ContextDecorator):
    """Run tasks when they are queued, for the duration of a block or a test.

    ``with run_immediately(): ...`` or ``@run_immediately()``;
    ``run_immediately(False)`` switches eager mode off where the setting
    turned it on.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._tokens: list[contextvars.Token[bool | None]] = []

    def __enter__(self) -> run_immediately:
        self._tokens.append(_override.set(self.enabled))
        return self

    def __exit__(self, *exc: Any) -> None:
        _override.reset(self._tokens.pop())


def eager() -> bool:
    """True when queued tasks run at once in this process."""
    override = _override.get()
    if override is not None:
        return override
    if not is_set("BACKGROUND_TASK_RUN_IMMEDIATELY"):  # the common case, checked per call
        return False
    return app_settings.RUN_IMMEDIATELY


def run_in_process(task: Task) -> Task:
    """Run a just-queued task here, as a worker would; return it refreshed."""
    return inprocess.runner.get().run_stored(task)
