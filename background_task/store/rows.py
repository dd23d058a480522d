"""Building unsaved task rows: one call's options checked, its arguments
serialized, its columns filled, without ``Model.__init__`` on the hot path.

Works on the model class it is given, so the models' own 1.2.8 manager
(``Task.objects.new_task``) and the enqueue paths share it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.db.models.base import ModelState
from django.db.models.signals import post_init, pre_init

from background_task.core import instruments
from background_task.core.instruments import collect_headers
from background_task.core.limits import LimitSpec
from background_task.core.limits import call_key as limit_key
from background_task.core.options import validate_options
from background_task.core.rates import RateSpec
from background_task.core.rates import call_key as rate_key
from background_task.core.rates import stored as stored_rate
from background_task.core.schedules import _check_priority, aware, repeat_fields
from background_task.core.serialization import dumps_params, task_hash
from background_task.core.signals import listened
from background_task.core.uniqueness import UniqueSpec, call_key
from background_task.store.routing import queue_alias

M = TypeVar("M", bound=models.Model)


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
    # The content type as the queue's database knows it (its foreign key
    # points there, which is not always where ContentType is routed).
    return {
        "creator_content_type": ContentType.objects.db_manager(queue_alias()).get_for_model(
            creator
        ),
        "creator_object_id": pk,
    }


def build_row(
    model: type[M],
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
    retry_delay: str | None = None,
    unique: UniqueSpec | None = None,
    limit: LimitSpec | None = None,
    rate: RateSpec | None = None,
    traced: bool = True,
) -> M:
    """Validate one call and build its unsaved ``model`` row; bad values raise
    TypeError or ValueError naming the problem.

    The installed instruments' headers (a trace context) are attached unless
    ``traced`` is False (a schedule's firing starts a trace of its own)."""
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
        model,
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
            "retry_delay": retry_delay,
            "enqueued_at": now,
            "creator_object_id": creation["creator_object_id"],
        },
    )
    if content_type is not None:
        task.creator_content_type = content_type  # type: ignore[attr-defined]
    if limit is not None:
        task.concurrency_limit = limit.limit  # type: ignore[attr-defined]
        task.concurrency_key = limit_key(  # type: ignore[attr-defined]
            task_name, limit.source, args or (), kwargs or {}
        )
    if rate is not None:
        task.rate_limit = stored_rate(rate.rate)  # type: ignore[attr-defined]
        task.rate_key = rate_key(  # type: ignore[attr-defined]
            task_name, rate.source, args or (), kwargs or {}
        )
    if unique is not None:
        task.unique_key = call_key(  # type: ignore[attr-defined]
            task_name, unique.source, unique.until, args or (), kwargs or {}, lambda: params
        )
    if traced and instruments.ACTIVE:
        task.headers = collect_headers(task)  # type: ignore[attr-defined]
    return task


class _RowTemplate:
    """A model's concrete fields at their defaults, read once: a constant
    default is the same object on every ``Field.get_default()`` call, so
    only callable defaults (``task_id``, the JSON lists) are called per row."""

    def __init__(self, model: type[models.Model]) -> None:
        fields = model._meta.concrete_fields
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


_templates: dict[type[models.Model], _RowTemplate] = {}


def new_row(model: type[M], values: dict[str, Any]) -> M:
    """``model(**values)``, the other fields at their defaults.

    Built without ``Model.__init__``'s per-field work (a fifth of an
    enqueue's CPU time) unless someone listens for ``pre_init`` or
    ``post_init`` on the model; then it is the real ``model(...)``.
    """
    template = _templates.get(model)
    if template is None:
        template = _templates[model] = _RowTemplate(model)
    row = template.constants.copy()
    row.update(values)
    for name, default in template.computed:
        if name not in values:
            row[name] = default()
    if init_receivers(model):
        return model(*[row[name] for name in template.attnames])
    return bare_instance(model, row)


def init_receivers(model: type[models.Model]) -> bool:
    """Whether a ``pre_init`` or ``post_init`` receiver listens to ``model``: the
    hot paths then build instances with ``Model.__init__``, else with
    :func:`bare_instance`."""
    return listened(pre_init, model) or listened(post_init, model)


def bare_instance(model: type[M], values: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> M:
    """An unsaved ``model`` holding ``values`` by attname, built without
    ``Model.__init__`` and its per-field work (call only when
    :func:`init_receivers` is false)."""
    instance = model.__new__(model)
    instance.__dict__.update(values)
    instance._state = ModelState()
    return instance
