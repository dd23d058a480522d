"""Managers and querysets that read and write where the queue lives.

A plain Django queryset reads from ``db_for_read`` and writes to
``db_for_write``; the queue's models read from where they write (see
:mod:`background_task.store.routing`), and ``.using(alias)`` still wins.
"""

from __future__ import annotations

from typing import TypeVar

from django.db import models

from background_task.store.routing import queue_alias

_M = TypeVar("_M", bound=models.Model)


class QueueQuerySet(models.QuerySet[_M]):
    """A queryset whose database is the queue's unless ``.using()`` named one."""

    @property
    def db(self) -> str:
        return self._db or queue_alias()  # type: ignore[attr-defined]


class QueueManager(models.Manager[_M]):
    """A manager whose database is the queue's unless ``.db_manager()`` named one;
    ``QueueManager.from_queryset(SomeQueueQuerySet)`` adds a queryset's methods."""

    _queryset_class = QueueQuerySet

    @property
    def db(self) -> str:
        return self._db or queue_alias()
