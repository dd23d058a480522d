"""The columns a task row has, queued or finished: 1.2.8's, then ours.

``BaseTask`` (:mod:`.task`) adds the behaviour; ``Task`` and
``CompletedTask`` are the two tables.
"""

from __future__ import annotations

from django.db import models

from background_task.core import status
from background_task.core.options import (
    QUEUE_MAX_LENGTH,
    TASK_ID_MAX_LENGTH,
    TASK_NAME_MAX_LENGTH,
    VERBOSE_NAME_MAX_LENGTH,
)
from background_task.store.ids import new_task_id


class TaskColumns(models.Model):
    """The columns both tables share (1.2.8's first, then ours)."""

    HOURLY = 3600
    DAILY = 24 * HOURLY
    WEEKLY = 7 * DAILY
    EVERY_2_WEEKS = 2 * WEEKLY
    EVERY_4_WEEKS = 4 * WEEKLY
    NEVER = 0
    REPEAT_CHOICES = (
        (HOURLY, "hourly"),
        (DAILY, "daily"),
        (WEEKLY, "weekly"),
        (EVERY_2_WEEKS, "every 2 weeks"),
        (EVERY_4_WEEKS, "every 4 weeks"),
        (NEVER, "never"),
    )

    # 64-bit ids (1.2.8's were 32-bit): every task queued takes one, and a
    # sustained 1,000 tasks a second would use up 2**31 of them in 25 days.
    id = models.BigAutoField(primary_key=True)

    # 1.2.8 columns.
    task_name = models.CharField(max_length=TASK_NAME_MAX_LENGTH, db_index=True)
    task_params = models.TextField()
    task_hash = models.CharField(max_length=40, db_index=True)
    verbose_name = models.CharField(max_length=VERBOSE_NAME_MAX_LENGTH, null=True, blank=True)
    priority = models.IntegerField(default=0, db_index=True)
    run_at = models.DateTimeField(db_index=True)
    repeat = models.BigIntegerField(choices=REPEAT_CHOICES, default=NEVER)
    repeat_until = models.DateTimeField(null=True, blank=True)
    queue = models.CharField(max_length=QUEUE_MAX_LENGTH, null=True, blank=True)
    attempts = models.IntegerField(default=0, db_index=True)
    failed_at = models.DateTimeField(db_index=True, null=True, blank=True)
    last_error = models.TextField(blank=True)
    locked_by = models.CharField(max_length=64, null=True, blank=True)
    locked_at = models.DateTimeField(db_index=True, null=True, blank=True)
    creator_object_id = models.PositiveIntegerField(null=True, blank=True)

    # Added by django-background-task.
    task_id = models.CharField(
        max_length=TASK_ID_MAX_LENGTH, unique=True, default=new_task_id, editable=False
    )
    status = models.CharField(max_length=16, choices=status.CHOICES, default=status.WAITING)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    # The run_at the task was scheduled for; retries move run_at, not this,
    # so a repeating task keeps its phase.
    scheduled_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)  # first attempt
    last_attempted_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # JSON text of the return value; ``result`` decodes it.
    result_json = models.TextField(db_column="result", null=True, blank=True)
    errors = models.JSONField(default=list, blank=True)  # one record per failed attempt
    worker_ids = models.JSONField(default=list, blank=True)  # one entry per attempt
    max_attempts = models.PositiveIntegerField(null=True, blank=True)  # None: the setting
    timeout = models.FloatField(null=True, blank=True)  # seconds; None: no hard limit
    result_ttl = models.PositiveIntegerField(null=True, blank=True)  # seconds
    backend = models.CharField(max_length=32, null=True, blank=True)  # django.tasks alias
    # "retry" or "fail" when the worker dies holding the task; None: the setting.
    on_worker_lost = models.CharField(max_length=8, null=True, blank=True)
    # A calendar repeat (JSON of relativedelta fields, {"months": 1}); ``repeat``
    # then holds its approximate length in seconds, for 1.2.8 code.
    repeat_rule = models.CharField(max_length=255, null=True, blank=True)
    # The call's retry_delay (JSON of a RetryPolicy); None: the decorator's,
    # else the setting's, else 1.2.8's backoff.
    retry_delay = models.TextField(null=True, blank=True)
    # A concurrency limit: at most concurrency_limit tasks with this key run at once.
    concurrency_key = models.CharField(max_length=190, null=True, blank=True)
    concurrency_limit = models.PositiveIntegerField(null=True, blank=True)
    # A rate limit: at most N starts with this key in any window ("N/seconds").
    rate_key = models.CharField(max_length=190, null=True, blank=True)
    rate_limit = models.CharField(max_length=32, null=True, blank=True)
    # What the running task reported (current_task().set_progress / update_meta);
    # ``progress`` and ``meta`` on the handle decode them.
    progress_json = models.JSONField(db_column="progress", null=True, blank=True)
    meta_json = models.JSONField(db_column="meta", null=True, blank=True)
    # Context integrations attach when the task is queued and read when it runs
    # (an OpenTelemetry trace context, say); None for most tasks.
    headers = models.JSONField(null=True, blank=True)
    # The workflow node this task is a step of (WorkflowNode id); None for most.
    step_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        abstract = True
