"""The logger of django-background-tasks 1.2.8's runner messages, as projects patch it.

1.2.8 logged ``Running %s``, ``Ran task and deleting %s``, ``Rescheduling %s``
(ERROR) and ``Failed to retrieve tasks. Database unreachable.`` (WARNING)
through the module-level ``logger`` of ``background_task.tasks``, and projects
patch that attribute in their tests (``mock.patch("background_task.tasks.logger")``).
Those messages are logged through :func:`tasks_logger`, which returns whatever
``background_task.tasks.logger`` is at that moment: that module registers a
provider reading its own global when it is imported.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from background_task.core.hooks import Hook

LOGGER_NAME = "background_task.tasks"
_logger = logging.getLogger(LOGGER_NAME)

#: Returns the logger 1.2.8's runner messages go to; ``background_task.tasks``
#: provides it (its ``logger`` attribute, looked up at each call).
provider: Hook[Callable[[], logging.Logger]] = Hook(
    "the 1.2.8 runner's logger", "background_task.tasks", default=lambda: _logger
)


def tasks_logger() -> logging.Logger:
    """The logger of the 1.2.8 runner messages: ``background_task.tasks.logger``."""
    return provider.get()()
