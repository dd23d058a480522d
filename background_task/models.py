"""The app's models module, and 1.2.8's import path of ``Task`` and ``CompletedTask``.

The models live in :mod:`background_task.store.models`. The signals are
importable from here too, as they were in 1.2.8.
"""

from background_task.core.signals import (
    task_created,
    task_error,
    task_failed,
    task_finished,
    task_rescheduled,
    task_started,
    task_successful,
)
from background_task.store.models import (
    QUEUE_MAX_LENGTH,
    TASK_ID_MAX_LENGTH,
    TASK_NAME_MAX_LENGTH,
    VERBOSE_NAME_MAX_LENGTH,
    BaseTask,
    CompletedTask,
    CompletedTaskQuerySet,
    ConcurrencySlot,
    PausedQueue,
    QueueSample,
    RateSlot,
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
    "find_task",
    "new_task_id",
    "task_created",
    "task_error",
    "task_failed",
    "task_finished",
    "task_rescheduled",
    "task_started",
    "task_successful",
]
