"""The states of a task, importable without loading models.

See :mod:`background_task.core.status`.
"""

from background_task.core.status import (
    CANCELLED,
    CHOICES,
    DONE,
    ERROR,
    FINISHED,
    PENDING,
    RUNNING,
    WAITING,
)

__all__ = [
    "CANCELLED",
    "CHOICES",
    "DONE",
    "ERROR",
    "FINISHED",
    "PENDING",
    "RUNNING",
    "WAITING",
]
