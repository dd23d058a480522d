"""The package's models, one module per table family.

- :mod:`.columns`: the columns a task row has (abstract);
- :mod:`.task`: ``Task``, ``CompletedTask`` and ``BaseTask``, the handle API;
- :mod:`.querysets` and :mod:`.manager`: their named states and 1.2.8's manager;
- :mod:`.worker`: ``WorkerProcess``; :mod:`.schedule`: ``Schedule``, ``ScheduleFire``;
- :mod:`.sample`: ``QueueSample``; :mod:`.queue`: ``PausedQueue``;
- :mod:`.limits`: ``ConcurrencySlot``; :mod:`.workflow`: ``Workflow``, ``WorkflowNode``.

Django loads them through :mod:`background_task.models`, the app's models module.
"""

from background_task.core.options import (
    QUEUE_MAX_LENGTH,
    TASK_ID_MAX_LENGTH,
    TASK_NAME_MAX_LENGTH,
    VERBOSE_NAME_MAX_LENGTH,
)
from background_task.store.ids import new_task_id, new_task_ids
from background_task.store.models.limits import ConcurrencySlot, RateSlot
from background_task.store.models.manager import TaskManager
from background_task.store.models.querysets import CompletedTaskQuerySet, TaskQuerySet
from background_task.store.models.queue import PausedQueue
from background_task.store.models.sample import QueueSample
from background_task.store.models.schedule import Schedule, ScheduleFire
from background_task.store.models.task import (
    BaseTask,
    CompletedTask,
    Task,
    build_task,
    find_task,
    tasks_from_db,
)
from background_task.store.models.worker import WorkerProcess, WorkerProcessQuerySet
from background_task.store.models.workflow import Workflow, WorkflowNode

__all__ = [
    "QUEUE_MAX_LENGTH",
    "TASK_ID_MAX_LENGTH",
    "TASK_NAME_MAX_LENGTH",
    "VERBOSE_NAME_MAX_LENGTH",
    "BaseTask",
    "CompletedTask",
    "CompletedTaskQuerySet",
    "ConcurrencySlot",
    "PausedQueue",
    "QueueSample",
    "RateSlot",
    "Schedule",
    "ScheduleFire",
    "Task",
    "TaskManager",
    "TaskQuerySet",
    "WorkerProcess",
    "WorkerProcessQuerySet",
    "Workflow",
    "WorkflowNode",
    "build_task",
    "find_task",
    "new_task_id",
    "new_task_ids",
    "tasks_from_db",
]
