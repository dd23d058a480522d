"""Per-minute samples of the queue's state, for the dashboard's charts."""

from __future__ import annotations

from django.db import models

from background_task.store.models.routed import QueueManager


class QueueSample(models.Model):
    """The queue's state once a minute, for the dashboard's charts.

    One worker per minute writes the row (the unique minute decides which);
    the depth is counted when the row is written, the finished and failed
    counts cover the minute before ``minute``. Rows older than a week are
    deleted as new ones are written.
    """

    minute = models.DateTimeField(unique=True)
    waiting = models.PositiveIntegerField(default=0)
    due = models.PositiveIntegerField(default=0)
    running = models.PositiveIntegerField(default=0)
    finished = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    queues = models.JSONField(default=dict)  # {queue: {"waiting": n, ...}}

    objects = QueueManager()

    class Meta:
        db_table = "background_task_sample"
        ordering = ["minute"]
        verbose_name = "queue sample"

    def __str__(self) -> str:
        return f"{self.minute}: {self.due} due, {self.finished} finished"
