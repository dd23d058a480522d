"""The 1.2.8 import path of the signals; see :mod:`background_task.core.signals`."""

from background_task.core.signals import (
    listened,
    task_created,
    task_error,
    task_failed,
    task_finished,
    task_rescheduled,
    task_started,
    task_successful,
)

__all__ = [
    "listened",
    "task_created",
    "task_error",
    "task_failed",
    "task_finished",
    "task_rescheduled",
    "task_started",
    "task_successful",
]
