"""The 1.2.8 import path of the registry and the task API.

As the app's ``tasks`` module it is what task discovery imports for this
app: it registers the tasks that ship with the package (the HTTP tasks of
:mod:`background_task.contrib.http`) and otherwise only re-exports, touching
neither the database nor the models.
"""

from background_task.api.proxy import TaskProxy
from background_task.api.registry import Tasks, autodiscover, tasks
from background_task.api.runner import DBTaskRunner
from background_task.contrib import http  # noqa: F401 (registers the built-in tasks)
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
