"""Task rows: ``Task`` (waiting and running) and ``CompletedTask`` (history).

Both keep every column of django-background-tasks 1.2.8 and its table names,
so a 1.2.8 database upgrades in place. The columns added since give each task
a stable public ``task_id`` that moves with it to the completed table, an
explicit ``status``, timestamps, the return value, one error record per failed
attempt and per-task limits.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models, transaction
from django.db.models import Exists, OuterRef, Q
from django.db.models.base import ModelState
from django.db.models.functions import Coalesce, Now
from django.db.models.signals import post_init, pre_init
from django.utils import timezone

from background_task.core import status
from background_task.core.conf import app_settings, is_set
from background_task.core.recurrence import get_timezone
from background_task.core.schedules import next_calendar_repetition, next_repetition
from background_task.core.serialization import dumps_params, loads_params, task_hash
from background_task.core.signals import listened

if TYPE_CHECKING:
    from collections.abc import Sequence

logger = logging.getLogger("background_task.models")

TASK_NAME_MAX_LENGTH = 190  # characters, as in 1.2.8
QUEUE_MAX_LENGTH = 190  # characters
VERBOSE_NAME_MAX_LENGTH = 255  # characters
TASK_ID_MAX_LENGTH = 64  # characters, the django.tasks limit for result ids


def new_task_id() -> str:
    """Return a fresh public task id (a UUID4 string, 36 characters).

    What ``str(uuid.uuid4())`` returns, built from the random bytes' hex
    text without the UUID object (a third of the time; every queued task
    needs one): the version digit is 4, and the variant digit keeps two
    random bits under the RFC 4122 variant's ``10``.
    """
    return _task_id(os.urandom(16).hex())


def new_task_ids(count: int) -> Iterator[str]:
    """``count`` fresh task ids, as :func:`new_task_id` makes them, from one
    read of the system's randomness per 1,024 ids (a system call per id was
    a tenth of a bulk enqueue's time)."""
    while count > 0:
        chunk = min(count, 1024)
        text = os.urandom(16 * chunk).hex()
        for start in range(0, 32 * chunk, 32):
            yield _task_id(text[start : start + 32])
        count -= chunk


def _task_id(text: str) -> str:
    """The UUID4 string of 32 random hex digits."""
    variant = _VARIANT_DIGITS[int(text[16], 16)]
    return f"{text[:8]}-{text[8:12]}-4{text[13:16]}-{variant}{text[17:20]}-{text[20:]}"


#: A hex digit's low two bits under the RFC 4122 variant bits ``10``: 8, 9, a or b.
_VARIANT_DIGITS = "89ab" * 4


def creator_fields(creator: models.Model | None) -> dict[str, Any]:
    """Map a creator instance onto the generic foreign key columns."""
    if creator is None:
        return {"creator_content_type": None, "creator_object_id": None}
    pk = creator.pk
    if not isinstance(pk, int) or pk < 0:
        raise ValueError(
            f"creator must be a saved model instance with a non-negative integer primary key; "
            f"{type(creator).__name__} has pk {pk!r}."
        )
    return {
        "creator_content_type": ContentType.objects.get_for_model(creator),
        "creator_object_id": pk,
    }


class BaseTask(models.Model):
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

    class Meta:
        abstract = True

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
        if len(parts) >= 2 and parts[0] != socket.gethostname()[:32]:
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
        if until not in ("finished", "started"):
            raise ValueError(f"until must be 'finished' or 'started', not {until!r}.")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.refresh()
            if self.ready or (until == "started" and self.status == status.RUNNING):
                return self
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"Task {self.task_id} ({self.task_name}) is still {self.status} "
                    f"after {timeout:g}s."
                )
            time.sleep(
                interval
                if deadline is None
                else min(interval, max(0.0, deadline - time.monotonic()))
            )

    def cancel(self, force: bool = False) -> bool:
        """Cancel the task; True if it was waiting and will never run, or is
        running and was asked to stop. See :func:`background_task.api.control.cancel`."""
        from background_task.api.control import cancel

        return cancel(self, force=force)

    def retry(self) -> BaseTask:
        """Queue a failed or cancelled task again under the same task id."""
        from background_task.api.control import retry

        return retry(self)

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


class TaskQuerySet(models.QuerySet["Task"]):
    """Named states of waiting and running tasks."""

    def created_by(self, creator: models.Model) -> TaskQuerySet:
        content_type = ContentType.objects.get_for_model(creator)
        return self.filter(creator_content_type=content_type, creator_object_id=creator.pk)

    def waiting(self) -> TaskQuerySet:
        return self.filter(status=status.WAITING)

    def running(self) -> TaskQuerySet:
        return self.filter(status=status.RUNNING)

    def due(self, now: datetime) -> TaskQuerySet:
        return self.filter(status=status.WAITING, run_at__lte=now)

    def in_queues(self, queues: Sequence[str | None] | None) -> TaskQuerySet:
        """Restrict to the given queues; None means every queue."""
        if queues is None:
            return self
        names = [q for q in queues if q is not None]
        condition = Q(queue__in=names)
        if None in queues:
            condition |= Q(queue__isnull=True)
        return self.filter(condition)

    def waiting_copies(self, digest: str) -> TaskQuerySet:
        """Unclaimed waiting tasks of the same name and arguments."""
        return self.filter(status=status.WAITING, task_hash=digest, locked_by=None)

    def claim_expired(self, now: datetime) -> TaskQuerySet:
        """Running tasks whose claim is older than MAX_RUN_TIME."""
        expiry = now - timedelta(seconds=app_settings.MAX_RUN_TIME)
        return self.filter(status=status.RUNNING, locked_at__lt=expiry)

    def orphaned(self, now: datetime, lost_after: float | None) -> TaskQuerySet:
        """Running tasks whose worker is gone.

        Held by a registered worker whose last heartbeat (database time) is
        older than ``lost_after`` seconds; or held by a process that never
        registered (a 1.2.8 worker, ``run_next_task()`` in a web process)
        and claimed longer ago than MAX_RUN_TIME, 1.2.8's rule. A task held
        by a worker that heartbeats is never taken away from it. With
        ``lost_after=None`` only the second rule applies.
        """
        workers = WorkerProcess.objects.using(self.db)
        known = workers.filter(worker_id=OuterRef("locked_by"))
        expiry = now - timedelta(seconds=app_settings.MAX_RUN_TIME)
        condition: Any = ~Exists(known) & Q(locked_at__lt=expiry)
        if lost_after is not None:
            cutoff = Now() - timedelta(seconds=lost_after)
            condition |= Exists(known.filter(heartbeat_at__lt=cutoff))
        return self.filter(status=status.RUNNING).filter(condition)

    def in_claim_order(self) -> TaskQuerySet:
        """Order by priority (as BACKGROUND_TASK_PRIORITY_ORDERING says), run_at, id."""
        prefix = app_settings.BACKGROUND_TASK_PRIORITY_ORDERING
        return self.order_by(f"{prefix}priority", "run_at", "id")


class TaskManager(models.Manager.from_queryset(TaskQuerySet)):  # type: ignore[misc]
    """``Task.objects``: 1.2.8's manager methods on top of the named states."""

    def enqueue(self, task_name: str, *args: Any, **kwargs: Any) -> Task | None:
        """Queue a call of a task by name (see ``background_task.enqueue``)."""
        from background_task.api.registry import tasks

        return tasks.enqueue(task_name, *args, **kwargs)

    def unlocked(self, now: datetime) -> TaskQuerySet:
        """Rows nobody holds: never locked, or locked longer ago than MAX_RUN_TIME."""
        expiry = now - timedelta(seconds=app_settings.MAX_RUN_TIME)
        return self.filter(Q(locked_by=None) | Q(locked_at__lt=expiry))  # type: ignore[no-any-return]

    def locked(self, now: datetime) -> TaskQuerySet:
        """Rows held by a live claim (1.2.8 also counted expired claims here)."""
        expiry = now - timedelta(seconds=app_settings.MAX_RUN_TIME)
        return self.filter(locked_by__isnull=False, locked_at__gt=expiry)  # type: ignore[no-any-return]

    def failed(self) -> TaskQuerySet:
        return self.filter(failed_at__isnull=False)  # type: ignore[no-any-return]

    def find_available(self, queue: str | None = None) -> TaskQuerySet:
        """Due, unheld tasks in claim order, optionally of one queue (1.2.8 API)."""
        now = timezone.now()
        qs = self.unlocked(now).filter(failed_at=None, run_at__lte=now)
        qs = qs.filter(status__in=status.PENDING)
        if queue:
            qs = qs.filter(queue=queue)
        return qs.in_claim_order()

    def new_task(
        self,
        task_name: str,
        args: Any = None,
        kwargs: dict[str, Any] | None = None,
        run_at: datetime | None = None,
        priority: int = 0,
        queue: str | None = None,
        verbose_name: str | None = None,
        creator: models.Model | None = None,
        repeat: int | None = None,
        repeat_until: datetime | None = None,
        remove_existing_tasks: bool = False,
    ) -> Task:
        """Build an unsaved Task; with ``remove_existing_tasks`` first delete the
        waiting tasks of the same name, arguments and queue."""
        from background_task.api.rows import build_task

        args = [] if args is None else args
        task = build_task(
            task_name,
            args if isinstance(args, list | tuple) else [args],
            kwargs,
            now=timezone.now(),
            run_at=run_at,
            priority=priority,
            queue=queue,
            verbose_name=verbose_name,
            creator=creator,
            repeat=repeat,
            repeat_until=repeat_until,
        )
        if remove_existing_tasks:
            self.waiting_copies(task.task_hash).in_queues([queue]).delete()
        return task

    def get_task(self, task_name: str, args: Any = None, kwargs: Any = None) -> TaskQuerySet:
        args = [] if args is None else args
        params = dumps_params(args if isinstance(args, list | tuple) else [args], kwargs or {})
        return self.filter(task_hash=task_hash(task_name, params))  # type: ignore[no-any-return]

    def drop_task(self, task_name: str, args: Any = None, kwargs: Any = None) -> None:
        self.get_task(task_name, args, kwargs).delete()


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

    def lock(self, locked_by: str) -> Task | None:
        """Claim this task for ``locked_by`` if nobody holds it; return the fresh row.

        One conditional UPDATE, so two workers can never both win (1.2.8 API).
        """
        now = timezone.now()
        expiry = now - timedelta(seconds=app_settings.MAX_RUN_TIME)
        token = uuid.uuid4().hex
        updated = (
            Task.objects.filter(pk=self.pk, status__in=status.PENDING)
            .filter(Q(locked_by=None) | Q(locked_at__lt=expiry))
            .update(
                locked_by=locked_by,
                locked_at=now,
                status=status.RUNNING,
                claim_token=token,
                last_attempted_at=now,
                started_at=Coalesce("started_at", now),
            )
        )
        if not updated:
            return None
        return Task.objects.get(pk=self.pk)  # type: ignore[no-any-return]

    def increment_attempts(self) -> None:
        """Count one more attempt, writing only that column (1.2.8 saved the whole row)."""
        self.attempts += 1
        Task.objects.filter(pk=self.pk).update(attempts=models.F("attempts") + 1)

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

    def create_completed_task(self) -> CompletedTask:
        """Insert and return the CompletedTask row for this task (1.2.8 API)."""
        completed = self.completed_task(
            timezone.now(), status=status.ERROR if self.failed_at else status.DONE
        )
        completed.save()
        return completed

    def next_repetition(self, now: datetime) -> Task | None:
        """Build (unsaved) the next run of a repeating task, or None."""
        scheduled = self.scheduled_at or self.run_at
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

    def create_repetition(self) -> Task | None:
        """Insert and return the next run of a repeating task (1.2.8 API)."""
        repetition = self.next_repetition(timezone.now())
        if repetition is not None:
            repetition.save()
        return repetition


class CompletedTaskQuerySet(models.QuerySet["CompletedTask"]):
    """Named states of finished tasks."""

    def created_by(self, creator: models.Model) -> CompletedTaskQuerySet:
        content_type = ContentType.objects.get_for_model(creator)
        return self.filter(creator_content_type=content_type, creator_object_id=creator.pk)

    def failed(self, within: timedelta | None = None) -> CompletedTaskQuerySet:
        qs = self.filter(failed_at__isnull=False)
        if within:
            qs = qs.filter(failed_at__gt=timezone.now() - within)
        return qs

    def succeeded(self, within: timedelta | None = None) -> CompletedTaskQuerySet:
        qs = self.filter(failed_at__isnull=True)
        if within:
            qs = qs.filter(run_at__gt=timezone.now() - within)
        return qs


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

    objects = CompletedTaskQuerySet.as_manager()

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


def init_receivers() -> bool:
    """Whether a ``pre_init`` or ``post_init`` receiver listens to Task: the
    hot paths then build tasks with ``Model.__init__``, else with :func:`bare_task`."""
    return listened(pre_init, Task) or listened(post_init, Task)


def bare_task(values: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> Task:
    """An unsaved Task holding ``values`` by attname, built without
    ``Model.__init__`` and its per-field work (call only when
    :func:`init_receivers` is false)."""
    task = Task.__new__(Task)
    task.__dict__.update(values)
    task._state = ModelState()
    return task


def tasks_from_db(using: str, attnames: list[str], rows: list[Any]) -> list[Task]:
    """``Task.from_db(using, attnames, row)`` for each row of every concrete field.

    Built without ``Model.__init__`` (its per-field work is a tenth of a
    claim's CPU time) unless :func:`init_receivers`; then it is ``from_db``.
    """
    if init_receivers():
        return [Task.from_db(using, attnames, row) for row in rows]
    tasks = []
    for row in rows:
        task = bare_task(zip(attnames, row, strict=True))
        task._state.adding, task._state.db = False, using
        tasks.append(task)
    return tasks


def find_task(task_id: str, using: str | None = None) -> Task | CompletedTask:
    """The task with this public id, queued, running or finished.

    Raises :class:`~background_task.core.exceptions.TaskNotFound` when there is
    none (never queued, or its history row was pruned).
    """
    from background_task.core.exceptions import TaskNotFound

    found: Task | CompletedTask | None = (
        Task.objects.using(using).filter(task_id=task_id).first()
        or CompletedTask.objects.using(using).filter(task_id=task_id).first()
    )
    if found is None:
        raise TaskNotFound(f"No task with id {task_id!r} is queued, running or in the history.")
    return found


class WorkerProcessQuerySet(models.QuerySet["WorkerProcess"]):
    """Named states of worker rows; ages are measured in database time."""

    def alive(self, lost_after: float) -> WorkerProcessQuerySet:
        return self.filter(heartbeat_at__gte=Now() - timedelta(seconds=lost_after))

    def lost(self, lost_after: float) -> WorkerProcessQuerySet:
        return self.filter(heartbeat_at__lt=Now() - timedelta(seconds=lost_after))

    def without_tasks(self) -> WorkerProcessQuerySet:
        held = Task.objects.filter(status=status.RUNNING, locked_by=OuterRef("worker_id"))
        return self.filter(~Exists(held))


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

    objects = WorkerProcessQuerySet.as_manager()

    class Meta:
        db_table = "background_task_worker"
        verbose_name = "worker"
        ordering = ["host", "pid"]

    def __str__(self) -> str:
        return f"{self.kind} {self.worker_id}"


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

    class Meta:
        db_table = "background_task_schedule_fire"
        ordering = ["-fire_at"]
        constraints = [
            models.UniqueConstraint(fields=["schedule", "fire_at"], name="bgtask_one_fire_per_time")
        ]

    def __str__(self) -> str:
        return f"{self.schedule_id} at {self.fire_at}"


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

    class Meta:
        db_table = "background_task_sample"
        ordering = ["minute"]
        verbose_name = "queue sample"

    def __str__(self) -> str:
        return f"{self.minute}: {self.due} due, {self.finished} finished"
