"""Schedules (periodic, cron, rrule) and the fire times they have used."""

from __future__ import annotations

from django.db import models

from background_task.core.options import QUEUE_MAX_LENGTH, TASK_ID_MAX_LENGTH, TASK_NAME_MAX_LENGTH
from background_task.store.models.routed import QueueManager
from background_task.store.models.task import BaseTask, CompletedTask, Task


class Schedule(models.Model):
    """One periodic, cron or rrule schedule, synced from code and settings.

    Workers sync the definitions when they start: new ones are added,
    changed ones updated, and ones gone from code or settings marked
    ``defined=False`` (kept, with their history). Any worker fires a due
    schedule; each fire time is recorded in :class:`ScheduleFire`, whose
    unique constraint makes a second firing of the same time impossible.
    """

    INTERVAL = "interval"
    CRON = "cron"
    RRULE = "rrule"
    KIND_CHOICES = [(INTERVAL, "interval"), (CRON, "cron"), (RRULE, "rrule")]
    CATCH_UP_CHOICES = [("once", "once"), ("skip", "skip"), ("all", "all")]

    name = models.CharField(max_length=TASK_NAME_MAX_LENGTH, unique=True)
    task_name = models.CharField(max_length=TASK_NAME_MAX_LENGTH)
    kind = models.CharField(max_length=16, choices=KIND_CHOICES)
    expression = models.CharField(max_length=255)  # crontab, rrule, or seconds
    timezone = models.CharField(max_length=64)
    task_params = models.TextField(default="[[], {}]")  # JSON [args, kwargs]
    queue = models.CharField(max_length=QUEUE_MAX_LENGTH, null=True, blank=True)
    priority = models.IntegerField(default=0)
    catch_up = models.CharField(max_length=8, choices=CATCH_UP_CHOICES, default="once")
    catch_up_limit = models.PositiveIntegerField(default=100)
    overlap = models.BooleanField(default=False)
    source = models.CharField(max_length=16, default="code")  # "code" or "settings"
    defined = models.BooleanField(default=True)  # present in code/settings at the last sync
    enabled = models.BooleanField(default=True)  # switched off and on in the admin
    fingerprint = models.CharField(max_length=64)
    anchor = models.DateTimeField()  # where an interval's or rrule's grid starts
    next_run_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_run_at = models.DateTimeField(null=True, blank=True)  # the last fire time
    last_task_id = models.CharField(max_length=TASK_ID_MAX_LENGTH, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = QueueManager()

    class Meta:
        db_table = "background_task_schedule"
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.expression})"

    def last_task(self) -> BaseTask | None:
        """The task of the last fire, queued, running or finished (None if pruned)."""
        if not self.last_task_id:
            return None
        db = self._state.db
        return (
            Task.objects.using(db).filter(task_id=self.last_task_id).first()
            or CompletedTask.objects.using(db).filter(task_id=self.last_task_id).first()
        )

    def last_outcome(self) -> str:
        """``waiting``, ``running``, ``done``, ``error``; ``""`` if it never fired."""
        task = self.last_task()
        if task is None:
            return "" if not self.last_task_id else "pruned"
        return str(task.status)


class ScheduleFire(models.Model):
    """One fire time of a schedule: the task it queued, or why none was queued."""

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="fires")
    fire_at = models.DateTimeField()
    task_id = models.CharField(max_length=TASK_ID_MAX_LENGTH, null=True, blank=True)
    skipped = models.CharField(max_length=255, blank=True)  # why no task was queued
    created_at = models.DateTimeField(auto_now_add=True)

    objects = QueueManager()

    class Meta:
        db_table = "background_task_schedule_fire"
        ordering = ["-fire_at"]
        constraints = [
            models.UniqueConstraint(fields=["schedule", "fire_at"], name="bgtask_one_fire_per_time")
        ]

    def __str__(self) -> str:
        return f"{self.schedule_id} at {self.fire_at}"
