"""What django-background-tasks 1.2.8's methods on a queued task do, for code
that claims, runs and settles tasks itself: ``Task.lock``, ``reschedule``,
``increment_attempts``, ``create_completed_task`` and ``create_repetition``
call these.

Workers use their own fenced writes (:mod:`background_task.runtime.execution`);
these keep 1.2.8's behaviour, logs and signals, with our columns kept true.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING

from django.db import models, transaction
from django.db.models import Exists, OuterRef, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from background_task.core import status
from background_task.core.conf import app_settings
from background_task.core.errors import error_record, format_traceback
from background_task.core.exceptions import InvalidTaskError
from background_task.core.retry import DEFAULT_POLICY
from background_task.core.signals import task_failed, task_rescheduled
from background_task.store.models.keys import released_key
from background_task.store.models.worker import WorkerProcess

if TYPE_CHECKING:
    from background_task.store.models.task import CompletedTask, Task

logger = logging.getLogger("background_task.models")


def lock(task: Task, locked_by: str) -> Task | None:
    """Claim ``task`` for ``locked_by`` if nobody holds it; return the fresh row.

    Nobody holds it when it is unlocked, or when its lock is older than
    MAX_RUN_TIME and its holder is no registered worker (1.2.8's rule; a
    registered worker's task is never taken from it: the recovery of lost
    workers settles those). One conditional UPDATE, so two callers can
    never both win, and a new claim token, so the old holder's writes
    change nothing (1.2.8 API).
    """
    now = timezone.now()
    expiry = now - timedelta(seconds=app_settings.MAX_RUN_TIME)
    token = uuid.uuid4().hex
    registered = WorkerProcess.objects.filter(worker_id=OuterRef("locked_by"))
    updated = (
        type(task)
        .objects.filter(pk=task.pk, status__in=status.PENDING)
        .filter(Q(locked_by=None) | (Q(locked_at__lt=expiry) & ~Exists(registered)))
        .update(
            locked_by=locked_by,
            locked_at=now,
            status=status.RUNNING,
            claim_token=token,
            last_attempted_at=now,
            started_at=Coalesce("started_at", now),
            unique_key=released_key(),
        )
    )
    if not updated:
        return None
    return type(task).objects.get(pk=task.pk)  # type: ignore[no-any-return]


def reschedule(task: Task, err: BaseException, traceback: TracebackType | None) -> None:
    """Count a failed attempt of ``task`` (1.2.8 API, for code that runs
    tasks itself): queue it again after the backoff, or, once its
    attempts are used up or for an ``InvalidTaskError``, move it to the
    history as failed. Logs and signals as 1.2.8 did, and records the
    attempt in ``errors`` as a worker does."""
    now = timezone.now()
    trace = format_traceback(err.with_traceback(traceback))
    task.attempts += 1
    task.last_error = trace
    task.errors = [
        *(task.errors or []),
        error_record(err, task.attempts, now, task.locked_by, trace),
    ]
    if task.locked_by:
        task.worker_ids = [*(task.worker_ids or []), task.locked_by]
    using = task._state.db
    if task.has_reached_max_attempts() or isinstance(err, InvalidTaskError):
        task.failed_at = now
        logger.warning("Marking task %s as failed", task)
        completed = task.completed_task(now, status=status.ERROR, expires_at=task.expiry(now))
        with transaction.atomic(using=using):
            type(task).objects.using(using).filter(pk=task.pk).delete()
            completed.save(using=using, force_insert=True)
        task_failed.send(sender=task.__class__, task_id=task.pk, completed_task=completed)
        return
    backoff = DEFAULT_POLICY.delay(task.attempts)
    task.run_at = now + backoff
    logger.warning("Rescheduling task %s for %s later at %s", task, backoff, task.run_at)
    task_rescheduled.send(sender=task.__class__, task=task)
    task.status = status.WAITING
    task.locked_by = task.locked_at = task.claim_token = None
    type(task).objects.using(using).filter(pk=task.pk).update(
        attempts=task.attempts,
        last_error=trace,
        errors=task.errors,
        worker_ids=task.worker_ids,
        run_at=task.run_at,
        status=status.WAITING,
        locked_by=None,
        locked_at=None,
        claim_token=None,
    )


def increment_attempts(task: Task) -> None:
    """Count one more attempt, writing only that column (1.2.8 saved the whole row)."""
    task.attempts += 1
    type(task).objects.filter(pk=task.pk).update(attempts=models.F("attempts") + 1)


def create_completed_task(task: Task) -> CompletedTask:
    """Insert and return the CompletedTask row for ``task`` (1.2.8 API)."""
    completed = task.completed_task(
        timezone.now(), status=status.ERROR if task.failed_at else status.DONE
    )
    completed.save()
    return completed


def create_repetition(task: Task) -> Task | None:
    """Insert and return the next run of a repeating task (1.2.8 API)."""
    repetition = task.next_repetition(timezone.now())
    if repetition is not None:
        repetition.save()
    return repetition
