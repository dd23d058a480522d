"""Concurrency limits in the database: a run takes a slot of its key before
it starts and gives it back when it ends.

A key's slots are the numbers 0 to limit - 1, and the unique constraint on
(key, slot) of :class:`ConcurrencySlot` is the limit: taking a slot is one
INSERT, and two runs can never hold one number. A run that finds no free
number is *blocked* (it leaves its claim and no claim reads it).

No blocked task is left behind, without any lock: a task that blocks
commits its ``blocked`` status and then counts the key's slots again; a run
that ends commits the deletion of its slot and then looks for blocked
tasks. Each read sees every commit made before it began, so whichever of
the two commits comes second, the read after it sees the other's change:
either the blocking task finds the slot free, or the ending run finds the
task blocked; both then wake blocked tasks (waking too many only makes one
block again). Inside a transaction, those reads wait for its commit
(``on_commit``): a worker gives back one run's slot and takes the next
run's in one transaction, one commit for both.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from django.db import connections, transaction
from django.db.models import Exists, F, Field, OuterRef
from django.db.models.constants import OnConflict
from django.utils import timezone

from background_task.core import status
from background_task.store.models import ConcurrencySlot, Task
from background_task.store.routing import queue_alias

logger = logging.getLogger("background_task.worker")


def _taken(key: str, using: str) -> list[int]:
    return list(ConcurrencySlot.objects.using(using).filter(key=key).values_list("slot", flat=True))


def acquire(task: Task, using: str | None = None) -> bool:
    """Give the claimed ``task`` a slot of its key, or block it: True if it may run.

    A blocked task leaves its claim (fenced on the claim token) and waits,
    unclaimable, until a run of its key ends (:func:`release`).
    """
    key, limit = task.concurrency_key, task.concurrency_limit
    if key is None or limit is None:
        return True
    using = queue_alias(using)
    slots = ConcurrencySlot.objects.using(using)
    if task.attempts:
        slots.filter(task_id=task.task_id).delete()  # an earlier attempt's, if it was left
    taken: set[int] = set() if limit == 1 else set(_taken(key, using))
    for number in range(limit):
        if number not in taken and _insert_slot(task, key, number, using):
            return True
    _block(task, using)
    return False


@functools.cache
def _slot_fields() -> tuple[Field[Any, Any], ...]:
    concrete = {field.name: field for field in ConcurrencySlot._meta.concrete_fields}
    return tuple(
        concrete[name] for name in ("key", "slot", "task_id", "claim_token", "acquired_at")
    )


@functools.cache
def _slot_insert_sql(vendor: str, using: str) -> str:
    """The INSERT of :func:`_insert_slot` for the database ``using`` (built once)."""
    ops = connections[using].ops
    fields = _slot_fields()
    return " ".join(
        part
        for part in (
            ops.insert_statement(on_conflict=OnConflict.IGNORE),
            ops.quote_name(ConcurrencySlot._meta.db_table),
            f"({', '.join(ops.quote_name(str(field.column)) for field in fields)})",
            f"VALUES ({', '.join(['%s'] * len(fields))})",
            ops.on_conflict_suffix_sql(list(fields), OnConflict.IGNORE, None, None),
        )
        if part
    )


def _insert_slot(task: Task, key: str, number: int, using: str) -> bool:
    """Insert slot ``number`` of ``key`` for ``task``; False if the unique
    constraint refused it (another run holds that number).

    One statement that skips a conflicting row (``ON CONFLICT DO NOTHING``,
    ``INSERT OR IGNORE``, ``INSERT IGNORE``, as Django spells it for the
    database): no savepoint needed inside a transaction, and the row count
    says whether the slot was taken.
    """
    connection = connections[using]
    sql = _slot_insert_sql(connection.vendor, using)
    fields = _slot_fields()
    values = [key, number, task.task_id, task.claim_token or "", timezone.now()]
    params = [
        field.get_db_prep_save(value, connection)
        for field, value in zip(fields, values, strict=True)
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return bool(cursor.rowcount == 1)


def _block(task: Task, using: str) -> None:
    rows = Task.objects.using(using).filter(pk=task.pk, claim_token=task.claim_token)
    if not rows.update(**task.unstarted_values(status.BLOCKED)):
        return  # not this worker's claim any more
    logger.debug("Task %s (%s) blocked on %s.", task.task_id, task.task_name, task.concurrency_key)
    # Counted again after the blocked status committed (see the module's
    # docstring): a slot freed in between is taken by a woken task.
    assert task.concurrency_key is not None and task.concurrency_limit is not None
    _wake_after_commit(task.concurrency_key, task.concurrency_limit, using)


def release(task: Task, token: str | None, using: str | None = None, *, wake: bool = True) -> int:
    """Give back the slot ``task``'s run under claim ``token`` held (the run
    ended, however it ended) and wake blocked tasks of its key once that is
    committed; return how many were woken (0 inside a transaction, whose
    commit wakes them).

    With ``wake=False`` the caller wakes them later, after the commit, with
    :func:`wake_keys` (a worker does it for many runs at once)."""
    key, limit = task.concurrency_key, task.concurrency_limit
    if key is None or limit is None:
        return 0
    using = queue_alias(using)
    ConcurrencySlot.objects.using(using).filter(
        task_id=task.task_id, claim_token=token or ""
    ).delete()
    return _wake_after_commit(key, limit, using) if wake else 0


def wake_keys(limits: dict[str, int], using: str | None = None) -> int:
    """Wake the blocked tasks of these keys (key -> limit) that their free
    slots can take, with one read when none is blocked; return how many.

    For slots given back with ``release(wake=False)``: called after those
    releases committed, it keeps the module's rule (each release is
    followed by a read of its key's blocked tasks), a little later.
    """
    using = queue_alias(using)
    if not limits:
        return 0
    blocked = set(
        Task.objects.using(using)
        .filter(status=status.BLOCKED, concurrency_key__in=list(limits))
        .order_by()
        .values_list("concurrency_key", flat=True)
        .distinct()
    )
    return sum(_wake(key, limits[key], using) for key in blocked if key is not None)


def _wake_after_commit(key: str, limit: int, using: str) -> int:
    """:func:`_wake` now in autocommit (its count), else once the transaction commits."""
    if not connections[using].in_atomic_block:
        return _wake(key, limit, using)
    transaction.on_commit(lambda: _wake(key, limit, using), using=using)
    return 0


def _wake(key: str, limit: int, using: str) -> int:
    """Blocked tasks of ``key`` back to waiting, one per free slot, by claim order."""
    tasks = Task.objects.using(using)
    ids = list(
        tasks.filter(status=status.BLOCKED, concurrency_key=key)
        .in_claim_order()
        .values_list("pk", flat=True)[:limit]
    )
    if not ids:
        return 0
    free = limit - len(_taken(key, using))
    if free <= 0:
        return 0
    # run_at is set (to itself) so that PostgreSQL's trigger wakes idle workers.
    woken: int = tasks.filter(pk__in=ids[:free], status=status.BLOCKED).update(
        status=status.WAITING, run_at=F("run_at")
    )
    return woken


def sweep(using: str | None = None) -> int:
    """Delete the slots of runs that ended without giving them back (their
    worker was killed, say) and wake every key's blocked tasks that fit;
    return how many were woken."""
    using = queue_alias(using)
    holding = Task.objects.using(using).filter(
        task_id=OuterRef("task_id"), claim_token=OuterRef("claim_token"), status=status.RUNNING
    )
    slots = ConcurrencySlot.objects.using(using)
    if slots.exists():  # one cheap read when no task uses a limit
        slots.exclude(Exists(holding)).delete()
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
            woken += _wake(key, limit, using)
    return woken
