"""The 1.2.8 import path of the registry and the task API.

As the app's ``tasks`` module it is what task discovery imports for this
app: it registers the tasks that ship with the package (the HTTP tasks of
:mod:`background_task.contrib.http`) and otherwise only re-exports, touching
neither the database nor the models.
"""

import logging

from background_task.api.proxy import TaskProxy
from background_task.api.registry import Tasks, autodiscover, tasks
from background_task.api.runner import DBTaskRunner
from background_task.contrib import http  # noqa: F401 (registers the built-in tasks)
from background_task.core import legacy_log
from background_task.core.schedules import TaskSchedule

background = tasks.background

#: The logger of the runner's messages, as in 1.2.8: ``Running %s``, ``Ran
#: task and deleting %s``, ``Rescheduling %s`` (ERROR) and ``Failed to
#: retrieve tasks. Database unreachable.`` (WARNING). Patching this attribute
#: (``mock.patch("background_task.tasks.logger")``) captures them.
logger = logging.getLogger(legacy_log.LOGGER_NAME)
# Read at each message, so a patched attribute is the one used.
legacy_log.provider.register(lambda: logger)

__all__ = [
    "DBTaskRunner",
    "TaskProxy",
    "TaskSchedule",
    "Tasks",
    "autodiscover",
    "background",
    "logger",
    "tasks",
]
