"""Paused queues: one row per queue that workers do not claim from."""

from __future__ import annotations

from django.db import models

from background_task.core.options import QUEUE_MAX_LENGTH
from background_task.store.models.routed import QueueManager

#: How the default queue (``queue=None``) is named in :class:`PausedQueue`.
DEFAULT_QUEUE = ""


class PausedQueue(models.Model):
    """A queue that is paused: workers claim none of its tasks until the row
    is deleted (:func:`background_task.resume_queue`). Queueing into it still
    works, and tasks already running finish."""

    queue = models.CharField(max_length=QUEUE_MAX_LENGTH, unique=True)  # "": the default queue
    paused_at = models.DateTimeField()
    reason = models.TextField(blank=True, default="")

    objects = QueueManager()

    class Meta:
        db_table = "background_task_pausedqueue"
        verbose_name = "paused queue"
        ordering = ["queue"]

    def __str__(self) -> str:
        return self.queue or "<default>"

    @property
    def name(self) -> str | None:
        """The queue's name as tasks give it (None: the default queue)."""
        return self.queue or None
