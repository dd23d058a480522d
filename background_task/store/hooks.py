"""The storage layer's hooks (see :mod:`background_task.core.hooks`).

Declared apart from the models so that the task API can fill them in
without loading the models.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from background_task.core.hooks import Hook

#: Queues a call of a task by its name, for ``Task.objects.enqueue(...)``;
#: the registry (:mod:`background_task.api.registry`) provides it.
enqueue_by_name: Hook[Callable[..., Any]] = Hook(
    "Task.objects.enqueue()", "background_task.api.registry"
)


class StepEnded(NamedTuple):
    """How a workflow step's task ended, as the workflow engine is told."""

    step_id: int
    status: str  # the task's: done, error or cancelled
    result_json: str | None
    task_id: str
    task_name: str
    errors: list[Any] | None

    @classmethod
    def of(cls, row: Any) -> StepEnded:
        """From a finished task's history row."""
        return cls(row.step_id, row.status, row.result_json, row.task_id, row.task_name, row.errors)


#: Settles workflow steps whose tasks ended for good and queues what follows,
#: inside the transaction that records the tasks' outcomes; the workflow
#: engine (:mod:`background_task.store.workflows`) provides it.
steps_finished: Hook[Callable[..., None]] = Hook(
    "workflow steps", "background_task.store.workflows"
)

#: Cancels a workflow's unfinished steps (``Workflow.cancel()``); the workflow
#: engine provides it.
cancel_workflow: Hook[Callable[..., bool]] = Hook(
    "Workflow.cancel()", "background_task.store.workflows"
)
