"""Running a stored task in this process: the task API's need, the runtime's job.

Eager mode (:mod:`background_task.api.eager`) and 1.2.8's ``run_task``
(which ``run_next_task`` ends in) run tasks here, through the same executor a worker uses.
That executor lives in the runtime layer, above this one, so the runtime
registers an :class:`InProcessRunner` (:mod:`background_task.runtime.inprocess`)
and the task API calls it through :data:`runner`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from background_task.core.hooks import Hook

if TYPE_CHECKING:
    from background_task.api.registry import Tasks
    from background_task.store.models import Task


class InProcessRunner(Protocol):
    """What the runtime provides to run tasks in the calling process."""

    def run_stored(self, task: Task) -> Task:
        """Claim a just-queued task, run it as a worker would, return it refreshed."""

    def run_task(self, registry: Tasks, task: Task | str, args: Any, kwargs: Any) -> None:
        """Run a stored Task (claimed first unless it holds a claim; outcome
        recorded), or call a task by name."""


#: The runtime's implementation (:mod:`background_task.runtime.inprocess`).
runner: Hook[InProcessRunner] = Hook(
    "running tasks in this process", "background_task.runtime.inprocess"
)
