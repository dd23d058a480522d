"""Registers the admin pages; Django's admin autodiscovery imports this module.

They live in :mod:`background_task.web.admin`.
"""

from background_task.web.admin import (
    BaseTaskAdmin,
    CompletedTaskAdmin,
    HasErrorFilter,
    ScheduleAdmin,
    TaskAdmin,
    WorkerProcessAdmin,
    dec_priority,
    inc_priority,
    pretty_params,
    retry_failed,
    run_now,
)

__all__ = [
    "BaseTaskAdmin",
    "CompletedTaskAdmin",
    "HasErrorFilter",
    "ScheduleAdmin",
    "TaskAdmin",
    "WorkerProcessAdmin",
    "dec_priority",
    "inc_priority",
    "pretty_params",
    "retry_failed",
    "run_now",
]
