"""Writing new task rows: what calling a task, or ``DBTaskRunner.schedule``, does."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from django.db import models, transaction
from django.utils import timezone

from background_task.api.proxy import validate_options
from background_task.core.schedules import TaskSchedule, _check_priority, aware, repeat_fields
from background_task.core.serialization import dumps_params, params_dumper, task_hash
from background_task.store.inserting import insert_many, insert_one
from background_task.store.models import (
    Task,
    bare_task,
    creator_fields,
    init_receivers,
    new_task_ids,
)


class Call(NamedTuple):
    """One call's arguments, for :meth:`TaskProxy.bulk`; build it with :func:`call`."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]


def call(*args: Any, **kwargs: Any) -> Call:
    """Capture the arguments of one call: ``task.bulk(call(1, to="a"), call(2, to="b"))``."""
    return Call(args, kwargs)


def build_task(
    task_name: str,
    args: Sequence[Any] | None,
    kwargs: Mapping[str, Any] | None,
    *,
    now: datetime,
    run_at: datetime | None = None,
    priority: int = 0,
    queue: str | None = None,
    verbose_name: str | None = None,
    creator: models.Model | None = None,
    repeat: Any = None,
    repeat_until: datetime | None = None,
    max_attempts: int | None = None,
    timeout: float | None = None,
    on_worker_lost: str | None = None,
    result_ttl: int | None = None,
) -> Task:
    """Validate one call and build its unsaved row; bad values raise TypeError/ValueError."""
    validate_options(
        name=task_name,
        queue=queue,
        verbose_name=verbose_name,
        max_attempts=max_attempts,
        timeout=timeout,
        on_worker_lost=on_worker_lost,
    )
    priority = _check_priority(priority) or 0
    if repeat_until is not None:
        if not isinstance(repeat_until, datetime):
            raise TypeError(
                f"repeat_until must be a datetime, not {type(repeat_until).__name__} "
                f"{repeat_until!r}."
            )
        repeat_until = aware(repeat_until)
    repeat_every, repeat_rule = repeat_fields(repeat)
    params = dumps_params(args or (), kwargs or {}, task_name)
    run_at = aware(run_at) if run_at else now
    creation = creator_fields(creator)
    content_type = creation["creator_content_type"]
    task = new_row(
        {
            "task_name": task_name,
            "task_params": params,
            "task_hash": task_hash(task_name, params),
            "priority": priority,
            "run_at": run_at,
            "scheduled_at": run_at,
            "queue": queue,
            "verbose_name": verbose_name,
            "repeat": repeat_every,
            "repeat_rule": repeat_rule,
            "repeat_until": repeat_until,
            "max_attempts": max_attempts,
            "timeout": timeout,
            "on_worker_lost": on_worker_lost,
            "result_ttl": result_ttl,
            "enqueued_at": now,
            "creator_object_id": creation["creator_object_id"],
        }
    )
    if content_type is not None:
        task.creator_content_type = content_type
    return task


class _RowTemplate:
    """Task's concrete fields at their defaults, read once: a constant
    default is the same object on every ``Field.get_default()`` call, so
    only callable defaults (``task_id``, the JSON lists) are called per row."""

    def __init__(self) -> None:
        fields = Task._meta.concrete_fields
        self.attnames = [field.attname for field in fields]
        #: {attname: default} of every field, in field order (callables' too, replaced per row).
        self.constants: dict[str, Any] = {}
        #: (attname, default callable) of the fields whose default is computed.
        self.computed: list[tuple[str, Any]] = []
        for field in fields:
            if field.has_default() and callable(field.default):
                self.constants[field.attname] = None
                self.computed.append((field.attname, field.get_default))
            else:
                self.constants[field.attname] = field.get_default()


_template: _RowTemplate | None = None


def new_row(values: dict[str, Any]) -> Task:
    """``Task(**values)``, the other fields at their defaults.

    Built without ``Model.__init__``'s per-field work (a fifth of an
    enqueue's CPU time) unless someone listens for ``pre_init`` or
    ``post_init`` on Task; then it is the real ``Task(...)``.
    """
    global _template
    if _template is None:
        _template = _RowTemplate()
    row = _template.constants.copy()
    row.update(values)
    for name, default in _template.computed:
        if name not in values:
            row[name] = default()
    if init_receivers():
        return Task(*[row[name] for name in _template.attnames])
    return bare_task(row)


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
    using: str | None = None,
) -> Task | None:
    """Store a task row and return it, or None when ``action`` kept an existing one.

    Inside ``transaction.atomic()`` the row is written in that transaction:
    others see it only on commit, and a rollback removes it.
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
    )
    if action == TaskSchedule.SCHEDULE and not remove_existing_tasks:
        return insert_one(task, using)
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
        task.save(using=using, force_insert=True)
    return task


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
    **options: Any,
) -> list[Task]:
    """Store many calls of one task with multi-row INSERTs; return the rows.

    The calls are serialized as their rows are written, in one transaction:
    a bad item raises TypeError (or ValueError) and nothing is stored.
    ``options`` are those of :func:`build_task`.
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

    return insert_many(template, varying(), count=len(items), batch_size=batch_size, using=using)
