"""Pausing queues: workers claim nothing from a paused queue until it is resumed.

Queueing into a paused queue still works, and its running tasks finish.
Workers read the paused queues at most a second before each claim, so a
queue paused now gets no new claims a second from now, on every database.
"""

from __future__ import annotations

import logging

from background_task.core.options import validate_options
from background_task.store import pausing
from background_task.store.models import PausedQueue
from background_task.store.routing import queue_alias

logger = logging.getLogger("background_task.control")


def _checked(queue: str | None) -> str | None:
    if queue is not None:
        validate_options(queue=queue)
    return queue or None


def pause_queue(queue: str | None, *, reason: str = "", using: str | None = None) -> bool:
    """Pause ``queue`` (None: the default queue); False if it was paused already.

    ``reason`` is shown wherever paused queues are (admin, ``task_status``,
    the status endpoint).
    """
    using = queue_alias(using)
    queue = _checked(queue)
    if not isinstance(reason, str):
        raise TypeError(f"reason must be a string, not {type(reason).__name__} {reason!r}.")
    paused = pausing.pause(queue, reason, using)
    if paused:
        logger.info("Queue %s paused%s.", queue or "<default>", f": {reason}" if reason else "")
    return paused


def resume_queue(queue: str | None, *, using: str | None = None) -> bool:
    """Resume a paused ``queue``; False if it was not paused. Its waiting
    tasks are claimed again within a second."""
    using = queue_alias(using)
    queue = _checked(queue)
    resumed = pausing.resume(queue, using)
    if resumed:
        logger.info("Queue %s resumed.", queue or "<default>")
    return resumed


def paused_queues(*, using: str | None = None) -> list[PausedQueue]:
    """The paused queues (``name``, ``paused_at``, ``reason``), by name."""
    using = queue_alias(using)
    return pausing.paused(using)
