"""Worker and supervisor processes, as their heartbeats show them."""

from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.db.models.functions import Now

from background_task.store.models.routed import QueueManager, QueueQuerySet


class WorkerProcessQuerySet(QueueQuerySet["WorkerProcess"]):
    """Named states of worker rows; ages are measured in database time."""

    def alive(self, lost_after: float) -> WorkerProcessQuerySet:
        return self.filter(heartbeat_at__gte=Now() - timedelta(seconds=lost_after))

    def lost(self, lost_after: float) -> WorkerProcessQuerySet:
        return self.filter(heartbeat_at__lt=Now() - timedelta(seconds=lost_after))


class WorkerProcess(models.Model):
    """One running worker or supervisor process, kept fresh by its heartbeats.

    A process inserts its row when it starts, sets ``heartbeat_at`` every
    BACKGROUND_TASK_HEARTBEAT_INTERVAL seconds and deletes the row when it
    exits cleanly. A row whose heartbeat is older than
    BACKGROUND_TASK_WORKER_LOST_AFTER belongs to a lost process: its tasks
    are recovered and the row is removed.
    """

    WORKER = "worker"
    SUPERVISOR = "supervisor"
    KIND_CHOICES = [(WORKER, "worker"), (SUPERVISOR, "supervisor")]

    worker_id = models.CharField(max_length=64, unique=True)
    kind = models.CharField(max_length=16, choices=KIND_CHOICES, default=WORKER)
    host = models.CharField(max_length=255)
    pid = models.IntegerField()
    supervisor_id = models.CharField(max_length=64, null=True, blank=True)
    queues = models.JSONField(null=True, blank=True)  # None: every queue
    concurrency = models.PositiveIntegerField(default=1)  # tasks at once
    version = models.CharField(max_length=32)
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField(db_index=True)

    objects = QueueManager.from_queryset(WorkerProcessQuerySet)()

    class Meta:
        db_table = "background_task_worker"
        verbose_name = "worker"
        ordering = ["host", "pid"]

    def __str__(self) -> str:
        return f"{self.kind} {self.worker_id}"
