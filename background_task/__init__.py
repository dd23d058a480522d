"""django-background-task: a database-backed task queue for Django.

Importing this package touches neither settings nor models, so it is safe in
settings files and at the top of any module.
"""

from __future__ import annotations

from typing import Any

from background_task.status import CANCELLED, DONE, ERROR, RUNNING, WAITING

__version__ = "0.1.0"

__all__ = [
    "CANCELLED",
    "DONE",
    "ERROR",
    "RUNNING",
    "WAITING",
    "__version__",
    "background",
    "call",
    "cron_task",
    "periodic_task",
]


def background(*args: Any, **kwargs: Any) -> Any:
    """Turn a function into a background task (see ``Tasks.background``).

    Usable bare (``@background``) or with options
    (``@background(schedule=60, queue="emails")``).
    """
    from background_task.registry import tasks

    return tasks.background(*args, **kwargs)


def periodic_task(*args: Any, **kwargs: Any) -> Any:
    """Register a task that runs every ``seconds`` seconds (see ``Tasks.periodic_task``).

    ``@periodic_task(seconds=3600, start_now=False, queue=None, priority=0)``.
    """
    from background_task.registry import tasks

    return tasks.periodic_task(*args, **kwargs)


def cron_task(*args: Any, **kwargs: Any) -> Any:
    """Register a task that runs on a crontab or an rrule (see ``Tasks.cron_task``).

    ``@cron_task("0 5 * * tue")``, ``@cron_task(minutes=[0, 30], hours=9)`` or
    ``@cron_task(rrule="FREQ=MONTHLY;BYMONTHDAY=-1;BYHOUR=23")``.
    """
    from background_task.registry import tasks

    return tasks.cron_task(*args, **kwargs)


def call(*args: Any, **kwargs: Any) -> Any:
    """Capture one call's arguments for ``task.bulk(...)``."""
    from background_task.enqueue import call as make_call

    return make_call(*args, **kwargs)


def __getattr__(name: str) -> Any:
    # TaskProxy is re-exported lazily so that importing the package stays cheap.
    if name == "TaskProxy":
        from background_task.proxy import TaskProxy

        return TaskProxy
    raise AttributeError(f"module 'background_task' has no attribute {name!r}")
