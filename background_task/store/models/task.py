"""Task rows: ``Task`` (waiting and running) and ``CompletedTask`` (history).

Both keep every column of django-background-tasks 1.2.8 and its table names,
so a 1.2.8 database upgrades in place. The columns added since give each task
a stable public ``task_id`` that moves with it to the completed table, an
explicit ``status``, timestamps, the return value, one error record per failed
attempt and per-task limits. A task is also its own handle: ``refresh()``,
``wait()``, ``cancel()`` and ``retry()`` are the state transitions a caller
drives; the worker's live in :mod:`background_task.runtime.execution`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import time
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models, transaction
from django.utils import timezone

from background_task.core import status
from background_task.core.conf import app_settings, host_name, is_set
from background_task.core.exceptions import TaskNotFound
from background_task.core.progress import Progress
from background_task.core.recurrence import get_timezone
from background_task.core.schedules import next_calendar_repetition, next_repetition
from background_task.core.serialization import loads_params
from background_task.store.hooks import StepEnded, steps_finished
from background_task.store.models import legacy
from background_task.store.models.columns import TaskColumns
from background_task.store.models.manager import TaskManager
from background_task.store.models.querysets import CompletedTaskQuerySet
from background_task.store.models.routed import QueueManager
from background_task.store.rows import bare_instance, build_row, init_receivers

logger = logging.getLogger("background_task.models")
control_logger = logging.getLogger("background_task.control")


class BaseTask(TaskColumns):
    """What both tables' rows can do: read their arguments and outcome, and
    act as the task's handle."""

    class Meta:
        abstract = True

    #: True on the row a call of a unique task returned instead of queueing a
    #: new one (a waiting run with the same key was there already).
    deduplicated = False

    def __str__(self) -> str:
        return self.verbose_name or self.task_name

    def params(self) -> tuple[list[Any], dict[str, Any]]:
        """Return the stored ``(args, kwargs)``."""
        return loads_params(self.task_params)

    def has_error(self) -> bool:
        return bool(self.last_error)

    has_error.boolean = True  # type: ignore[attr-defined]

    def locked_by_pid_running(self) -> bool | None:
        """Tell whether the locking process still runs, when it is on this host.

        ``locked_by`` is ``host:pid:random`` (or a bare pid written by 1.2.8).
        None when the task is not locked or was locked on another host.
        """
        if not self.locked_by:
            return None
        parts = self.locked_by.split(":")
        if len(parts) >= 2 and parts[0] != host_name()[:32]:
            return None
        try:
            pid = int(parts[1] if len(parts) >= 2 else parts[0])
        except ValueError:
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # it exists but belongs to another user
        return True

    locked_by_pid_running.boolean = True  # type: ignore[attr-defined]

    def definition(self) -> dict[str, Any]:
        """The columns that say what to run and how, for a new Task of the same work."""
        return {
            "task_name": self.task_name,
            "task_params": self.task_params,
            "task_hash": self.task_hash,
            "priority": self.priority,
            "queue": self.queue,
            "verbose_name": self.verbose_name,
            "creator_content_type_id": self.creator_content_type_id,  # type: ignore[attr-defined]
            "creator_object_id": self.creator_object_id,
            "repeat": self.repeat,
            "repeat_until": self.repeat_until,
            "max_attempts": self.max_attempts,
            "timeout": self.timeout,
            "result_ttl": self.result_ttl,
            "backend": self.backend,
            "on_worker_lost": self.on_worker_lost,
            "repeat_rule": self.repeat_rule,
            "retry_delay": self.retry_delay,
            "concurrency_key": self.concurrency_key,
            "concurrency_limit": self.concurrency_limit,
            "rate_key": self.rate_key,
            "rate_limit": self.rate_limit,
        }

    # -- the task as a handle ----------------------------------------------------

    @property
    def ready(self) -> bool:
        """True once the task has finished: done, failed for good or cancelled."""
        return self.status in status.FINISHED

    @property
    def result(self) -> Any:
        """The return value of a successful run (None before, or if it returned None)."""
        if self.result_json is None:
            return None
        return json.loads(self.result_json)

    @property
    def progress(self) -> Progress | None:
        """What the task last reported with ``current_task().set_progress()``:
        ``done``, ``total``, ``percent``, ``message``, ``updated_at``; None if
        it reported nothing. Stays in the history once the task finished."""
        if not self.progress_json:
            return None
        return Progress.from_json(self.progress_json)

    @property
    def meta(self) -> dict[str, Any]:
        """What the task stored with ``current_task().update_meta()`` ({} if nothing)."""
        return dict(self.meta_json or {})

    @property
    def error(self) -> dict[str, Any] | None:
        """The last failed attempt: ``exception_class_path``, ``message``,
        ``traceback``, ``attempt``, ``at``, ``worker_id``; None if none failed."""
        errors = self.errors or []
        return errors[-1] if errors else None

    def refresh(self) -> BaseTask:
        """Reload the task's state, wherever its row is now (queued, running or
        in the history); returns it. Raises TaskNotFound once its row is gone
        (pruned)."""
        found = find_task(self.task_id, using=self._state.db)
        for field in BaseTask._meta.concrete_fields:
            if not field.primary_key:
                setattr(self, field.attname, getattr(found, field.attname))
        self.status = found.status
        if isinstance(found, CompletedTask):
            self.expires_at = found.expires_at
        return self

    def wait(
        self, timeout: float | None = None, until: str = "finished", interval: float = 0.1
    ) -> BaseTask:
        """Block until the task has finished (or, with ``until="started"``, until
        it has started or finished); returns it, refreshed.

        Raises TimeoutError after ``timeout`` seconds. Polls the database
        every ``interval`` seconds.
        """
        deadline = self._deadline(timeout, until)
        while True:
            self.refresh()
            pause = self._pause(deadline, timeout, until, interval)
            if pause is None:
                return self
            time.sleep(pause)

    async def wait_async(
        self, timeout: float | None = None, until: str = "finished", interval: float = 0.1
    ) -> BaseTask:
        """``wait()`` for async code: ``await handle.wait_async(timeout=30)``
        (``await`` is a keyword, so not ``await handle.await()``)."""
        deadline = self._deadline(timeout, until)
        while True:
            await self.arefresh()
            pause = self._pause(deadline, timeout, until, interval)
            if pause is None:
                return self
            await asyncio.sleep(pause)

    @staticmethod
    def _deadline(timeout: float | None, until: str) -> float | None:
        if until not in ("finished", "started"):
            raise ValueError(f"until must be 'finished' or 'started', not {until!r}.")
        return None if timeout is None else time.monotonic() + timeout

    def _pause(
        self, deadline: float | None, timeout: float | None, until: str, interval: float
    ) -> float | None:
        """None when the wait is over, else the seconds to sleep before the next look."""
        if self.ready or (until == "started" and self.status == status.RUNNING):
            return None
        if deadline is None:
            return interval
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(
                f"Task {self.task_id} ({self.task_name}) is still {self.status} after {timeout:g}s."
            )
        return min(interval, left)

    async def arefresh(self) -> BaseTask:
        """``refresh()`` for async code."""
        return await sync_to_async(self.refresh, thread_sensitive=True)()

    async def acancel(self, force: bool = False) -> bool:
        """``cancel()`` for async code."""
        return await sync_to_async(self.cancel, thread_sensitive=True)(force)

    async def aretry(self) -> Task:
        """``retry()`` for async code."""
        return await sync_to_async(self.retry, thread_sensitive=True)()

    def cancel(self, force: bool = False) -> bool:
        """Cancel the task.

        - waiting: it moves to the history as ``cancelled`` and never runs; True;
        - running: it is asked to stop (``current_task().cancel_requested``
          turns True); with ``force=True`` the supervisor of the process running
          it kills that process and records the run as cancelled; True;
        - finished: nothing changes; False, and the log says so.
        """
        return _cancel(self, force)

    def retry(self) -> Task:
        """Queue a failed or cancelled task again, due now, under the same task id.

        Raises ValueError for a task that is still pending or succeeded.
        """
        using = self._state.db
        finished = CompletedTask.objects.using(using).filter(task_id=self.task_id).first()
        if finished is None or finished.status not in (status.ERROR, status.CANCELLED):
            state = finished.status if finished is not None else "not finished"
            raise ValueError(
                f"Only failed or cancelled tasks can be retried; task {self.task_id} is {state}."
            )
        requeued: Task = finished.requeue()
        return requeued

    def expiry(self, finished: datetime) -> datetime | None:
        """When the history row of a run finished at ``finished`` is pruned:
        after the task's ``ttl``, else BACKGROUND_TASK_RESULT_TTL; None: never."""
        ttl = self.result_ttl
        if ttl is None and is_set("BACKGROUND_TASK_RESULT_TTL"):
            ttl = app_settings.RESULT_TTL
        return None if ttl is None else finished + timedelta(seconds=ttl)

    def worker_lost_policy(self) -> str:
        """``"retry"`` or ``"fail"``: the task's choice, else the setting."""
        return self.on_worker_lost or app_settings.ON_WORKER_LOST

    def effective_max_attempts(self) -> int:
        return self.max_attempts or app_settings.MAX_ATTEMPTS

    def has_reached_max_attempts(self) -> bool:
        return self.attempts >= self.effective_max_attempts()

    def is_repeating_task(self) -> bool:
        return self.repeat > 0


class Task(BaseTask):
    """A task that is waiting or running."""

    # The claim runs on (status, priority, run_at, id); these single-column
    # indexes of 1.2.8 served nothing and cost every write. (Every query by
    # ``locked_by`` also asks for status RUNNING, a prefix of the claim index.)
    priority = models.IntegerField(default=0)
    attempts = models.IntegerField(default=0)
    failed_at = models.DateTimeField(null=True, blank=True)
    locked_at = models.DateTimeField(null=True, blank=True)

    claim_token = models.CharField(max_length=32, null=True, blank=True, editable=False)
    cancel_requested = models.BooleanField(default=False)
    cancel_force = models.BooleanField(default=False, db_default=False)  # kill its process
    unique_key = models.CharField(max_length=64, null=True, blank=True, unique=True)
    creator_content_type = models.ForeignKey(
        ContentType,
        null=True,
        blank=True,
        related_name="background_task",
        on_delete=models.CASCADE,
        # Only deleting a content type looks rows up by it alone.
        db_index=False,
    )
    creator = GenericForeignKey("creator_content_type", "creator_object_id")

    objects = TaskManager()

    class Meta:
        db_table = "background_task"
        indexes = [
            models.Index(
                fields=["status", "-priority", "run_at", "id"], name="background_task_claim_desc"
            ),
            models.Index(
                fields=["status", "priority", "run_at", "id"], name="background_task_claim_asc"
            ),
        ]

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.locked_by:
            self.locked_by = None
        super().save(*args, **kwargs)

    # -- 1.2.8's methods for code that runs tasks itself (see .legacy) -----------

    def lock(self, locked_by: str) -> Task | None:
        """Claim this task for ``locked_by`` if nobody holds it; the fresh row, or None."""
        return legacy.lock(self, locked_by)

    def reschedule(
        self,
        type: type[BaseException] | None,
        err: BaseException,
        traceback: TracebackType | None,
    ) -> None:
        """Count a failed attempt: queue it again after the backoff, or fail it for good."""
        legacy.reschedule(self, err, traceback)

    def increment_attempts(self) -> None:
        """Count one more attempt, writing only that column."""
        legacy.increment_attempts(self)

    def create_completed_task(self) -> CompletedTask:
        """Insert and return the CompletedTask row for this task."""
        return legacy.create_completed_task(self)

    def create_repetition(self) -> Task | None:
        """Insert and return the next run of a repeating task."""
        return legacy.create_repetition(self)

    def unstarted_values(self, state: str = status.WAITING) -> dict[str, Any]:
        """The columns that put this claimed task back in ``state`` as if
        never claimed (no attempt counted): a release, or a limit holding it."""
        values: dict[str, Any] = {
            "status": state,
            "locked_by": None,
            "locked_at": None,
            "claim_token": None,
        }
        if self.attempts == 0:
            values.update(started_at=None, last_attempted_at=None)
        return values

    def completed_values(self, now: datetime, **overrides: Any) -> dict[str, Any]:
        """The column values of this task's history row, finished at ``now``."""
        # From the instance's __dict__ (a deferred field is loaded by getattr):
        # this runs for every task a worker finishes.
        loaded = self.__dict__
        values = {
            name: loaded[name] if name in loaded else getattr(self, name)
            for name in _shared_attnames()
        }
        values.update(run_at=now, finished_at=now)
        values.update(overrides)
        return values

    def completed_task(self, now: datetime, **overrides: Any) -> CompletedTask:
        """Build the unsaved history row for this task, finished at ``now``."""
        return CompletedTask(**self.completed_values(now, **overrides))

    def next_repetition(self, now: datetime) -> Task | None:
        """Build (unsaved) the next run of a repeating task, or None.

        The next run keeps the phase of the time the task was scheduled for,
        which retries do not move (they move ``run_at``). A ``run_at`` changed
        before any attempt was made (in the admin, by a data migration) is
        that time, as in 1.2.8.
        """
        scheduled = self.run_at if self.attempts == 0 else (self.scheduled_at or self.run_at)
        if self.repeat_rule:
            zone = get_timezone(app_settings.SCHEDULE_TIMEZONE)
            run_at = next_calendar_repetition(
                scheduled, self.repeat_rule, now, self.repeat_until, zone
            )
        else:
            run_at = next_repetition(scheduled, self.repeat, now, self.repeat_until)
        if run_at is None:
            return None
        return Task(**self.definition(), run_at=run_at, scheduled_at=run_at, enqueued_at=now)


class CompletedTask(BaseTask):
    """A finished task: succeeded, failed for good or cancelled.

    As in 1.2.8, ``run_at`` holds the time the task finished.
    """

    status = models.CharField(max_length=16, choices=status.CHOICES, default=status.DONE)
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # Every finished task writes a row here; 1.2.8's indexes on these columns
    # served no query and cost every one of those writes.
    task_hash = models.CharField(max_length=40)
    priority = models.IntegerField(default=0)
    attempts = models.IntegerField(default=0)
    locked_at = models.DateTimeField(null=True, blank=True)
    creator_content_type = models.ForeignKey(
        ContentType,
        null=True,
        blank=True,
        related_name="completed_background_task",
        on_delete=models.CASCADE,
        db_index=False,
    )
    creator = GenericForeignKey("creator_content_type", "creator_object_id")

    objects = QueueManager.from_queryset(CompletedTaskQuerySet)()

    def __str__(self) -> str:
        return f"{self.verbose_name or self.task_name} - {self.run_at}"

    def requeue(self) -> Task:
        """Put this finished task back in the queue under the same task id, due now.

        Attempts start again from zero; the error records of earlier attempts are kept.
        """
        now = timezone.now()
        task = Task(
            **self.definition(),
            task_id=self.task_id,
            run_at=now,
            scheduled_at=now,
            enqueued_at=now,
            errors=self.errors,
        )
        with transaction.atomic(using=self._state.db):
            CompletedTask.objects.using(self._state.db).filter(pk=self.pk).delete()
            task.save(using=self._state.db, force_insert=True)
        return task


@functools.cache
def _history_attnames() -> tuple[str, ...]:
    return tuple(
        field.attname for field in CompletedTask._meta.concrete_fields if not field.primary_key
    )


@functools.cache
def _shared_attnames() -> tuple[str, ...]:
    """The history's columns that a queued task has too."""
    own = {field.attname for field in Task._meta.concrete_fields}
    return tuple(name for name in _history_attnames() if name in own)


def tasks_from_db(using: str, attnames: list[str], rows: list[Any]) -> list[Task]:
    """``Task.from_db(using, attnames, row)`` for each row of every concrete field.

    Built without ``Model.__init__`` (its per-field work is a tenth of a
    claim's CPU time) unless a ``pre_init`` or ``post_init`` receiver
    listens; then it is ``from_db``.
    """
    if init_receivers(Task):
        return [Task.from_db(using, attnames, row) for row in rows]
    tasks = []
    for row in rows:
        task = bare_instance(Task, zip(attnames, row, strict=True))
        task._state.adding, task._state.db = False, using
        tasks.append(task)
    return tasks


def find_task(task_id: str, using: str | None = None) -> Task | CompletedTask:
    """The task with this public id, queued, running or finished.

    Raises :class:`~background_task.core.exceptions.TaskNotFound` when there is
    none (never queued, or its history row was pruned).
    """
    found: Task | CompletedTask | None = (
        Task.objects.using(using).filter(task_id=task_id).first()
        or CompletedTask.objects.using(using).filter(task_id=task_id).first()
    )
    if found is None:
        raise TaskNotFound(f"No task with id {task_id!r} is queued, running or in the history.")
    return found


def build_task(task_name: str, args: Any, kwargs: Any, **options: Any) -> Task:
    """Validate one call and build its unsaved Task (see
    :func:`background_task.store.rows.build_row` for the options)."""
    return build_row(Task, task_name, args, kwargs, **options)


def _cancel(task: BaseTask, force: bool) -> bool:
    """:meth:`BaseTask.cancel`: every change is a fenced single-row write, safe
    against a worker that claims, finishes or recovers the task at the same moment."""
    using = task._state.db
    rows = Task.objects.using(using)
    row = rows.filter(task_id=task.task_id).first()
    if row is not None and row.status in (status.WAITING, status.BLOCKED):
        now = timezone.now()
        cancelled = row.completed_task(now, status=status.CANCELLED, expires_at=row.expiry(now))
        with transaction.atomic(using=using):
            # Only while nobody holds it: a claim in between makes it a running task.
            deleted, _ = rows.filter(
                pk=row.pk, status__in=(status.WAITING, status.BLOCKED), claim_token=None
            ).delete()
            if deleted:
                cancelled.save(using=using, force_insert=True)
                if row.step_id is not None:  # a workflow's step: it ends there
                    steps_finished.get()([StepEnded.of(cancelled)], using, now)
        if deleted:
            control_logger.info("Task %s (%s) cancelled before it ran.", row.task_id, row.task_name)
            task.status = status.CANCELLED
            return True
        row = rows.filter(task_id=task.task_id).first()
    if (
        row is not None
        and row.status == status.RUNNING
        and rows.filter(pk=row.pk, status=status.RUNNING).update(
            cancel_requested=True, cancel_force=force
        )
    ):
        control_logger.info(
            "Task %s (%s): cancellation requested%s.",
            row.task_id,
            row.task_name,
            " (the process running it will be killed)" if force else "",
        )
        return True
    finished = CompletedTask.objects.using(using).filter(task_id=task.task_id).first()
    state = finished.status if finished is not None else "gone"
    control_logger.info("Task %s is already %s; nothing to cancel.", task.task_id, state)
    return False
