"""Pausing and resuming queues: rows of :class:`PausedQueue`."""

from __future__ import annotations

from django.db import IntegrityError
from django.utils import timezone

from background_task.store.claim import wake_workers
from background_task.store.inserting import refusable
from background_task.store.models import PausedQueue
from background_task.store.models.queue import DEFAULT_QUEUE


def pause(queue: str | None, reason: str = "", using: str = "default") -> bool:
    """Pause ``queue`` (None: the default queue); False if it already was."""
    row = PausedQueue(queue=queue or DEFAULT_QUEUE, paused_at=timezone.now(), reason=reason)
    try:
        with refusable(using):
            row.save(using=using, force_insert=True)
    except IntegrityError:
        return False
    return True


def resume(queue: str | None, using: str = "default") -> bool:
    """Resume ``queue``; False if it was not paused. Idle PostgreSQL workers
    are woken (on commit), so its waiting tasks start at once."""
    deleted, _ = PausedQueue.objects.using(using).filter(queue=queue or DEFAULT_QUEUE).delete()
    if deleted:
        wake_workers(using)
    return bool(deleted)


def paused(using: str = "default") -> list[PausedQueue]:
    """The paused queues, by name."""
    return list(PausedQueue.objects.using(using).order_by("queue"))


def paused_names(using: str = "default") -> tuple[str | None, ...]:
    """The names of the paused queues (None: the default queue), sorted."""
    names = PausedQueue.objects.using(using).values_list("queue", flat=True)
    return tuple(sorted((name or None for name in names), key=lambda name: name or ""))
