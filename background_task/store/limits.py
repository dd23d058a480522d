"""Concurrency limits in the database: taking a slot before a run, and
letting blocked tasks wait again once slots are free.

Every change to a key's slots first updates the key's :class:`ConcurrencyKey`
row, inside the same transaction: the row lock (the write lock on SQLite)
makes the count and the change that follows one step, so two workers can
never both take the last slot, and a task is never blocked after the last
holder looked for blocked tasks to wake (each sees the other's commit).
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from background_task.core import status
from background_task.store.models import ConcurrencyKey, ConcurrencySlot, Task

logger = logging.getLogger("background_task.worker")


def _lock(key: str, now: datetime, using: str) -> None:
    """Take ``key``'s row lock for the current transaction (creating the row)."""
    keys = ConcurrencyKey.objects.using(using)
    if keys.filter(key=key).update(touched_at=now):
        return
    try:
        with transaction.atomic(using=using):
            keys.create(key=key, touched_at=now)
    except IntegrityError:  # another transaction created it first
        keys.filter(key=key).update(touched_at=now)


def _held(key: str, using: str) -> int:
    """Slots of ``key`` held by running tasks (a slot row of a run that ended
    without :func:`wake` counts no more; :func:`wake_all` removes it)."""
    holding = Task.objects.using(using).filter(
        task_id=OuterRef("task_id"), claim_token=OuterRef("claim_token"), status=status.RUNNING
    )
    count: int = (
        ConcurrencySlot.objects.using(using).filter(key=key).filter(Exists(holding)).count()
    )
    return count


def acquire(task: Task, using: str = "default") -> bool:
    """Give the claimed ``task`` a slot of its key, or block it: True if it may run.

    A blocked task leaves its claim (fenced on the claim token) and waits,
    unclaimable, until :func:`wake` lets it wait as usual again. False too
    when the claim is no longer this task's (its run belongs to another).
    """
    key, limit = task.concurrency_key, task.concurrency_limit
    if key is None or limit is None:
        return True
    now = timezone.now()
    tasks = Task.objects.using(using)
    mine = tasks.filter(pk=task.pk, claim_token=task.claim_token, status=status.RUNNING)
    slots = ConcurrencySlot.objects.using(using)
    with transaction.atomic(using=using):
        _lock(key, now, using)
        if not mine.exists():
            return False
        if _held(key, using) < limit:
            slots.filter(task_id=task.task_id).delete()  # an earlier attempt's
            slots.create(
                key=key, task_id=task.task_id, claim_token=task.claim_token or "", acquired_at=now
            )
            return True
        values: dict[str, object] = {
            "status": status.BLOCKED,
            "locked_by": None,
            "locked_at": None,
            "claim_token": None,
        }
        if task.attempts == 0:
            values.update(started_at=None, last_attempted_at=None)
        mine.update(**values)
    logger.debug("Task %s (%s) blocked: %s runs %d.", task.task_id, task.task_name, key, limit)
    return False


def wake(key: str, limit: int, using: str = "default", *, ended: str | None = None) -> int:
    """Let blocked tasks of ``key`` wait as usual again, one per free slot
    (by claim order); return how many. ``ended``: the task id of a run
    that just ended, whose slot row is removed."""
    with transaction.atomic(using=using):
        _lock(key, timezone.now(), using)
        if ended is not None:
            ConcurrencySlot.objects.using(using).filter(task_id=ended).delete()
        free = limit - _held(key, using)
        if free <= 0:
            return 0
        tasks = Task.objects.using(using)
        ids = list(
            tasks.filter(status=status.BLOCKED, concurrency_key=key)
            .in_claim_order()
            .values_list("pk", flat=True)[:free]
        )
        if not ids:
            return 0
        # run_at is set (to itself) so that PostgreSQL's trigger wakes idle workers.
        woken: int = tasks.filter(pk__in=ids, status=status.BLOCKED).update(
            status=status.WAITING, run_at=F("run_at")
        )
        return woken


def wake_all(using: str = "default") -> int:
    """:func:`wake` every key that has blocked tasks (after a crash, say),
    and remove the slot rows of runs that ended."""
    holding = Task.objects.using(using).filter(
        task_id=OuterRef("task_id"), claim_token=OuterRef("claim_token"), status=status.RUNNING
    )
    ConcurrencySlot.objects.using(using).exclude(Exists(holding)).delete()
    blocked = (
        Task.objects.using(using)
        .filter(status=status.BLOCKED)
        .values_list("concurrency_key", "concurrency_limit")
        .order_by()
        .distinct()
    )
    woken = 0
    for key, limit in list(blocked):
        if key is not None and limit is not None:
            woken += wake(key, limit, using)
    return woken
