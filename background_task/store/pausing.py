"""Pausing and resuming queues: rows of :class:`PausedQueue`."""

from __future__ import annotations

from django.db import IntegrityError
from django.utils import timezone

from background_task.store.claim import wake_workers
from background_task.store.inserting import refusable
from background_task.store.models import PausedQueue
from background_task.store.models.queue import DEFAULT_QUEUE
from background_task.store.routing import queue_alias


def pause(queue: str | None, reason: str = "", using: str | None = None) -> bool:
    """Pause ``queue`` (None: the default queue); False if it already was."""
    using = queue_alias(using)
    row = PausedQueue(queue=queue or DEFAULT_QUEUE, paused_at=timezone.now(), reason=reason)
    try:
        with refusable(using):
            row.save(using=using, force_insert=True)
    except IntegrityError:
        return False
    return True


def resume(queue: str | None, using: str | None = None) -> bool:
    """Resume ``queue``; False if it was not paused. Idle PostgreSQL workers
    are woken (on commit), so its waiting tasks start at once."""
    using = queue_alias(using)
    deleted, _ = PausedQueue.objects.using(using).filter(queue=queue or DEFAULT_QUEUE).delete()
    if deleted:
        wake_workers(using)
    return bool(deleted)


def paused(using: str | None = None) -> list[PausedQueue]:
    """The paused queues, by name."""
    using = queue_alias(using)
    return list(PausedQueue.objects.using(using).order_by("queue"))


def paused_names(using: str | None = None) -> tuple[str | None, ...]:
    """The names of the paused queues (None: the default queue), sorted."""
    using = queue_alias(using)
    names = PausedQueue.objects.using(using).values_list("queue", flat=True)
    return tuple(sorted((name or None for name in names), key=lambda name: name or ""))
