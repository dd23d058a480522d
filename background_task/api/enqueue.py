"""Queueing calls: what calling a task, ``task.bulk(...)`` or ``DBTaskRunner.schedule`` does."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from django.db import models, transaction
from django.utils import timezone

from background_task.core import instruments
from background_task.core.limits import LimitSpec
from background_task.core.rates import RateSpec
from background_task.core.schedules import TaskSchedule
from background_task.core.serialization import params_dumper, task_hash
from background_task.core.uniqueness import UniqueSpec
from background_task.store.ids import new_task_ids
from background_task.store.inserting import insert_many, insert_one, unsaved_copies
from background_task.store.models import Task, build_task
from background_task.store.routing import deferring_to, queue_alias
from background_task.store.unique import insert_unique


class Call(NamedTuple):
    """One call's arguments, for :meth:`TaskProxy.bulk`; build it with :func:`call`."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]


def call(*args: Any, **kwargs: Any) -> Call:
    """Capture the arguments of one call: ``task.bulk(call(1, to="a"), call(2, to="b"))``."""
    return Call(args, kwargs)


def schedule_task(
    task_name: str,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    *,
    run_at: datetime | None = None,
    priority: int = 0,
    action: int = TaskSchedule.SCHEDULE,
    queue: str | None = None,
    verbose_name: str | None = None,
    creator: models.Model | None = None,
    repeat: Any = None,
    repeat_until: datetime | None = None,
    remove_existing_tasks: bool = False,
    max_attempts: int | None = None,
    timeout: float | None = None,
    on_worker_lost: str | None = None,
    result_ttl: int | None = None,
    retry_delay: str | None = None,
    unique: UniqueSpec | None = None,
    limit: LimitSpec | None = None,
    rate: RateSpec | None = None,
    using: str | None = None,
    announce: Callable[[Task], None] | None = None,
) -> Task | None:
    """Store a task row and return it, or None when ``action`` kept an existing one.

    Inside ``transaction.atomic()`` the row is written in that transaction:
    others see it only on commit, and a rollback removes it. With ``unique``,
    a waiting row with the same key is returned instead (``deduplicated``
    set) and nothing is written. ``announce`` is called with a newly stored
    row (not a deduplicated one).

    Inside a transaction on another database than the queue's (see
    :func:`~background_task.store.routing.deferring_to`), the row is built
    and validated now, stored when that transaction commits, and the
    returned, still unsaved row gets its id then.
    """
    task = build_task(
        task_name,
        args,
        kwargs,
        now=timezone.now(),
        run_at=run_at,
        priority=priority,
        queue=queue,
        verbose_name=verbose_name,
        creator=creator,
        repeat=repeat,
        repeat_until=repeat_until,
        max_attempts=max_attempts,
        timeout=timeout,
        on_worker_lost=on_worker_lost,
        result_ttl=result_ttl,
        retry_delay=retry_delay,
        unique=unique,
        limit=limit,
        rate=rate,
    )
    alias = queue_alias(using)
    later = deferring_to(alias)
    if later is None:
        stored = _store(task, action, remove_existing_tasks, queue, unique, alias)
        if stored is not None and not stored.deduplicated:
            _announce(announce, stored)
        return stored

    def at_commit() -> None:
        stored = _store(task, action, remove_existing_tasks, queue, unique, alias)
        if stored is not None and _settle(task, stored):
            _announce(announce, task)

    transaction.on_commit(at_commit, using=later)
    return task


def _announce(announce: Callable[[Task], None] | None, task: Task) -> None:
    """A new row was stored: tell the caller's ``announce`` and the instruments."""
    if announce is not None:
        announce(task)
    if instruments.ACTIVE:
        instruments.queued([task])


def _announce_many(announce: Callable[[list[Task]], None] | None, rows: list[Task]) -> None:
    """Rows of one bulk call were stored (deduplicated ones count as not queued)."""
    if announce is not None:
        announce(rows)
    if instruments.ACTIVE:
        instruments.queued(row for row in rows if not row.deduplicated)


def _store(
    task: Task,
    action: int,
    remove_existing_tasks: bool,
    queue: str | None,
    unique: UniqueSpec | None,
    using: str,
) -> Task | None:
    """Write a built row as :func:`schedule_task` describes."""
    insert = insert_unique if unique is not None else insert_one
    if action == TaskSchedule.SCHEDULE and not remove_existing_tasks:
        return insert(task, using)
    with transaction.atomic(using=using):
        same = Task.objects.using(using).waiting_copies(task.task_hash)
        if remove_existing_tasks:
            same.in_queues([queue]).delete()
        if queue:
            same = same.filter(queue=queue)
        if action == TaskSchedule.RESCHEDULE_EXISTING:
            if same.update(run_at=task.run_at, priority=task.priority):
                return None
        elif action == TaskSchedule.CHECK_EXISTING and same.exists():
            return None
        if unique is not None:
            return insert_unique(task, using)
        task.save(using=using, force_insert=True)
    return task


def _settle(handle: Task, stored: Task) -> bool:
    """Point a deferred call's handle at the row its commit stored: True for a
    new row, False when a unique call was deduplicated into a waiting one."""
    if stored is handle:
        return True
    handle.pk, handle.task_id, handle.deduplicated = stored.pk, stored.task_id, True
    handle._state.adding, handle._state.db = False, stored._state.db
    return False


def split_call(index: int, item: Any) -> tuple[Sequence[Any], Mapping[str, Any]]:
    if isinstance(item, Call):
        return item.args, item.kwargs
    if isinstance(item, tuple | list):
        return item, {}
    raise TypeError(
        f"bulk() item {index} must be a tuple of positional arguments or "
        f"background_task.call(...), not {type(item).__name__} {item!r:.60}."
    )


def bulk_schedule(
    task_name: str,
    calls: Iterable[Any],
    *,
    batch_size: int = 1000,
    using: str | None = None,
    announce: Callable[[list[Task]], None] | None = None,
    **options: Any,
) -> list[Task]:
    """Store many calls of one task with multi-row INSERTs; return the rows.

    The calls are serialized as their rows are written, in one transaction:
    a bad item raises TypeError (or ValueError) and nothing is stored.
    ``options`` are those of :func:`build_task`; ``announce`` is called
    with the stored rows. Inside a transaction on another database, the
    calls are serialized now and stored at its commit (as for
    :func:`schedule_task`).
    """
    now = timezone.now()
    items = list(calls)
    if not items:
        return []
    # The first call is built in full (validating the options); the others
    # differ from it only in their arguments, their hash and their task id.
    template = build_task(task_name, *split_call(0, items[0]), now=now, **options)
    dumps = params_dumper()

    def varying() -> Iterator[tuple[str, str, str]]:
        yield template.task_params, template.task_hash, template.task_id
        ids = new_task_ids(len(items) - 1)
        for index in range(1, len(items)):
            params = dumps(*split_call(index, items[index]), task_name)
            yield params, task_hash(task_name, params), next(ids)

    alias = queue_alias(using)
    later = deferring_to(alias)
    if later is None:
        rows = insert_many(
            template, varying(), count=len(items), batch_size=batch_size, using=alias
        )
        _announce_many(announce, rows)
        return rows
    pending = list(varying())  # a bad item raises here, in the caller
    handles = unsaved_copies(template, pending)

    def at_commit() -> None:
        rows = insert_many(template, pending, batch_size=batch_size, using=alias)
        for handle, row in zip(handles, rows, strict=True):
            handle.pk = row.pk
            handle._state.adding, handle._state.db = False, alias
        _announce_many(announce, handles)

    transaction.on_commit(at_commit, using=later)
    return handles


def bulk_schedule_each(
    task_name: str,
    calls: Iterable[Any],
    *,
    unique: UniqueSpec | None = None,
    using: str | None = None,
    announce: Callable[[list[Task]], None] | None = None,
    **options: Any,
) -> list[Task]:
    """Store many calls, each row built on its own, in one transaction: for
    unique tasks (one INSERT per key) and keys computed per call.

    Returns one row per call: the row it was stored as, or for a unique
    task the waiting row it was deduplicated into (``deduplicated`` set),
    which may be a row an earlier call of the same batch stored. Every call
    is built (and validated) before anything is written. ``announce`` and a
    transaction on another database: as for :func:`bulk_schedule`.
    """
    now = timezone.now()
    tasks = [
        build_task(task_name, *split_call(index, item), now=now, unique=unique, **options)
        for index, item in enumerate(calls)
    ]
    alias = queue_alias(using)
    later = deferring_to(alias)
    if later is None:
        rows = _store_each(tasks, unique, alias)
        _announce_many(announce, rows)
        return rows

    def at_commit() -> None:
        rows = _store_each(tasks, unique, alias)
        for task, row in zip(tasks, rows, strict=True):
            _settle(task, row)
        _announce_many(announce, tasks)

    transaction.on_commit(at_commit, using=later)
    return tasks


def _store_each(tasks: list[Task], unique: UniqueSpec | None, alias: str) -> list[Task]:
    stored: dict[str, Task] = {}
    rows: list[Task] = []
    with transaction.atomic(using=alias):
        for task in tasks:
            if unique is None:
                rows.append(insert_one(task, alias))
                continue
            key = str(task.unique_key)
            row = stored.get(key)
            if row is None:
                row = stored[key] = insert_unique(task, alias)
            rows.append(row)
    return rows
