"""The app's models module, and 1.2.8's import path of ``Task`` and ``CompletedTask``.

The models live in :mod:`background_task.store.models`.
"""

from background_task.store.models import (
    QUEUE_MAX_LENGTH,
    TASK_ID_MAX_LENGTH,
    TASK_NAME_MAX_LENGTH,
    VERBOSE_NAME_MAX_LENGTH,
    BaseTask,
    CompletedTask,
    CompletedTaskQuerySet,
    QueueSample,
    Schedule,
    ScheduleFire,
    Task,
    TaskManager,
    TaskQuerySet,
    WorkerProcess,
    WorkerProcessQuerySet,
    find_task,
    new_task_id,
)

__all__ = [
    "QUEUE_MAX_LENGTH",
    "TASK_ID_MAX_LENGTH",
    "TASK_NAME_MAX_LENGTH",
    "VERBOSE_NAME_MAX_LENGTH",
    "BaseTask",
    "CompletedTask",
    "CompletedTaskQuerySet",
    "QueueSample",
    "Schedule",
    "ScheduleFire",
    "Task",
    "TaskManager",
    "TaskQuerySet",
    "WorkerProcess",
    "WorkerProcessQuerySet",
    "find_task",
    "new_task_id",
]
