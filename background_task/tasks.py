"""The 1.2.8 import path of the registry and the task API.

Django's own autodiscovery imports every app's ``tasks`` module, this one
included, so it only re-exports: importing it has no side effects.
"""

from background_task.api.proxy import TaskProxy
from background_task.api.registry import Tasks, autodiscover, tasks
from background_task.api.runner import DBTaskRunner
from background_task.core.schedules import TaskSchedule

background = tasks.background

__all__ = [
    "DBTaskRunner",
    "TaskProxy",
    "TaskSchedule",
    "Tasks",
    "autodiscover",
    "background",
    "tasks",
]
