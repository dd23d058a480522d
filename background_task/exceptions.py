"""The 1.2.8 import path of the exceptions; see :mod:`background_task.core.exceptions`."""

from background_task.core.exceptions import (
    ArgumentGone,
    BackgroundTaskError,
    InvalidTaskError,
    Retry,
    TaskCancelled,
    TaskDiscoveryError,
    TaskNotFound,
    TaskNotRegistered,
    TaskTimeout,
    WorkerLost,
)

__all__ = [
    "ArgumentGone",
    "BackgroundTaskError",
    "InvalidTaskError",
    "Retry",
    "TaskCancelled",
    "TaskDiscoveryError",
    "TaskNotFound",
    "TaskNotRegistered",
    "TaskTimeout",
    "WorkerLost",
]
