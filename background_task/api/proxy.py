"""``TaskProxy``: what ``@background`` returns; calling it queues the task."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async

from background_task.api.eager import eager, run_in_process
from background_task.api.runner import DBTaskRunner
from background_task.core.coroutines import is_async, run_to_completion
from background_task.core.limits import KeySource, LimitSpec, check_key, check_limit
from background_task.core.options import pick_ttl, ttl_seconds, validate_options
from background_task.core.rates import RateSpec, rate_spec
from background_task.core.retry import Policy, exception_types, make_policy, stored_policy
from background_task.core.schedules import TaskSchedule
from background_task.core.signals import listened, task_created
from background_task.core.uniqueness import (
    UNTIL_START,
    UniqueSpec,
    check_source,
    check_until,
)

if TYPE_CHECKING:
    from background_task.api.workflows import Step
    from background_task.store.models import Task

# Keyword arguments a call takes for itself; they never reach the function.
CONTROL_KWARGS = (
    "schedule",
    "priority",
    "queue",
    "verbose_name",
    "creator",
    "repeat",
    "repeat_until",
    "remove_existing_tasks",
    "timeout",
    "on_worker_lost",
    "ttl",
    "save_results",
    "retry_delay",
    "unique",
    "unique_key",
    "unique_until",
    "concurrency_key",
    "rate_key",
)


def unique_spec(unique: bool | None, key: Any, until: Any, *, per_call: bool) -> UniqueSpec | None:
    """How calls are made unique, from ``unique``, ``unique_key`` and
    ``unique_until`` (a key or an ``until`` implies ``unique=True``);
    None: not unique. Bad values raise TypeError or ValueError."""
    if unique is not None and not isinstance(unique, bool):
        raise TypeError(f"unique must be True or False, not {type(unique).__name__} {unique!r}.")
    source = check_source(key, per_call=per_call)
    if unique is False:
        if key is not None or until is not None:
            raise ValueError(
                "unique_key and unique_until make a task unique; unique=False contradicts them."
            )
        return None
    if not unique and key is None and until is None:
        return None
    return UniqueSpec(source, check_until(UNTIL_START if until is None else until))


def limit_spec(limit: Any, key: Any) -> LimitSpec | None:
    """A task's concurrency limit from ``concurrency_limit`` and
    ``concurrency_key``; None: no limit. Bad values raise TypeError or ValueError."""
    source = check_key(key, per_call=False)
    if limit is None:
        if key is not None:
            raise ValueError("concurrency_key needs concurrency_limit (how many may run at once).")
        return None
    return LimitSpec(check_limit(limit), source)


def _completing(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` (async), called and run to completion."""

    @functools.wraps(function)
    def now(*args: Any, **kwargs: Any) -> Any:
        return run_to_completion(function, *args, **kwargs)

    return now


class TaskProxy:
    """A registered task. Call it to queue a run; ``.now(...)`` runs it here and now."""

    def __init__(
        self,
        name: str,
        task_function: Callable[..., Any],
        schedule: TaskSchedule | None = None,
        queue: str | None = None,
        remove_existing_tasks: bool = False,
        runner: Any = None,
        *,
        max_attempts: int | None = None,
        timeout: float | None = None,
        verbose_name: str | None = None,
        on_worker_lost: str | None = None,
        ttl: Any = None,
        retry_delay: Any = None,
        retry_on: Any = None,
        dont_retry_on: Any = None,
        unique: bool | None = None,
        unique_key: KeySource = None,
        unique_until: str | None = None,
        concurrency_limit: int | None = None,
        concurrency_key: Any = None,
        rate_limit: Any = None,
        rate_key: Any = None,
        atomic: bool = False,
    ) -> None:
        self.name = name
        #: The task's code runs inside the transaction that records its success.
        self.atomic = atomic
        self.task_function = task_function
        # 1.2.8 exposed the raw function as ``now``: calling it writes nothing.
        # An ``async def`` function's ``now`` runs it to completion and returns
        # its result (from sync code or inside a running loop), never a
        # coroutine that a caller could forget to await.
        self.now = _completing(task_function) if is_async(task_function) else task_function
        self.schedule = TaskSchedule.create(schedule)
        self.queue = queue
        self.remove_existing_tasks = remove_existing_tasks
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.verbose_name = verbose_name
        self.on_worker_lost = on_worker_lost
        #: Seconds a finished run's row (and result) is kept; None: the setting.
        self.ttl = None if ttl is None else ttl_seconds(ttl)
        #: The decorator's retry policy (None: the setting's, else 1.2.8's backoff).
        self.retry_policy: Policy | None = None if retry_delay is None else make_policy(retry_delay)
        #: Only these exceptions are retried (None: every one); see :func:`retries`.
        self.retry_on = None if retry_on is None else exception_types(retry_on, "retry_on")
        #: These exceptions fail the task at once (None: none).
        self.dont_retry_on = (
            None if dont_retry_on is None else exception_types(dont_retry_on, "dont_retry_on")
        )
        #: How calls are deduplicated (None: they are not); see :func:`unique_spec`.
        self.unique = unique_spec(unique, unique_key, unique_until, per_call=False)
        #: At most this many runs with one key at once (None: no limit).
        self.limit = limit_spec(concurrency_limit, concurrency_key)
        #: At most this many starts with one key per window (None: no rate limit).
        self.rate = rate_spec(rate_limit, rate_key)
        if runner is None:
            runner = DBTaskRunner()
        self.runner = runner
        self.__doc__ = task_function.__doc__
        self.__name__ = getattr(task_function, "__name__", name)
        self.__module__ = getattr(task_function, "__module__", __name__)
        self.__wrapped__ = task_function

    def __call__(self, *args: Any, **kwargs: Any) -> Task | None:
        """Queue a run; return the saved Task, or None when an existing one was kept.

        The control keywords (``schedule``, ``priority``, ``queue``,
        ``verbose_name``, ``creator``, ``repeat``, ``repeat_until``,
        ``remove_existing_tasks``, ``timeout``, ``on_worker_lost``, ``ttl`` or
        ``save_results``, ``retry_delay``, ``unique``, ``unique_key``,
        ``unique_until``, ``concurrency_key``, ``rate_key``) are taken out
        before the arguments are stored.
        A unique task returns the waiting run with the same key, if there
        is one, with ``deduplicated`` set, and queues nothing.
        """
        # (The common call passes none of them: checked cheaply, it is the
        # hot path of every enqueue.)
        controls = (
            {key: kwargs.pop(key) for key in CONTROL_KWARGS if key in kwargs} if kwargs else {}
        )
        ttl = pick_ttl(controls.get("ttl"), controls.get("save_results"))
        if ttl is not None:
            validate_options(ttl=ttl)
        retry_delay = controls.get("retry_delay")
        schedule = self.schedule
        if "schedule" in controls:
            schedule = TaskSchedule.create(controls["schedule"]).merge(schedule)
        priority = controls.get("priority")
        unique = self.unique if not controls else self.call_unique(controls)
        options: dict[str, Any] = {} if unique is None else {"unique": unique}
        if self.limit is not None:
            options["limit"] = self.limit
            if "concurrency_key" in controls:
                options["limit"] = self.call_limit(controls["concurrency_key"])
        elif "concurrency_key" in controls:
            raise ValueError(
                f"concurrency_key was given, but {self.name} has no concurrency_limit; "
                f"set one on its decorator."
            )
        if self.rate is not None:
            options["rate"] = self.rate
            if "rate_key" in controls:
                key = check_key(controls["rate_key"], per_call=True, option="rate_key")
                options["rate"] = RateSpec(self.rate.rate, key)
        elif "rate_key" in controls:
            raise ValueError(
                f"rate_key was given, but {self.name} has no rate_limit; set one on its decorator."
            )
        return self.runner.schedule(  # type: ignore[no-any-return]
            self.name,
            args,
            kwargs,
            # None: now, the moment the row is built.
            run_at=None if schedule.immediate else schedule.run_at,
            priority=schedule.priority if priority is None else priority,
            action=schedule.action,
            queue=controls.get("queue", self.queue),
            verbose_name=controls.get("verbose_name", self.verbose_name),
            creator=controls.get("creator"),
            repeat=controls.get("repeat"),
            repeat_until=controls.get("repeat_until"),
            remove_existing_tasks=controls.get("remove_existing_tasks", self.remove_existing_tasks),
            max_attempts=self.max_attempts,
            timeout=controls.get("timeout", self.timeout),
            on_worker_lost=controls.get("on_worker_lost", self.on_worker_lost),
            result_ttl=self.ttl if ttl is None else ttl_seconds(ttl),
            retry_delay=None if retry_delay is None else stored_policy(retry_delay),
            **options,
        )

    def call_unique(self, controls: dict[str, Any]) -> UniqueSpec | None:
        """The uniqueness of one call: the decorator's, changed by the call's
        ``unique``, ``unique_key`` and ``unique_until``."""
        if not any(key in controls for key in ("unique", "unique_key", "unique_until")):
            return self.unique
        unique = controls.get("unique")
        if unique is None and self.unique is not None:
            unique = True
        spec = unique_spec(
            unique, controls.get("unique_key"), controls.get("unique_until"), per_call=True
        )
        if spec is None or self.unique is None:
            return spec
        # Options the call leaves out come from the decorator.
        return UniqueSpec(
            spec.source if "unique_key" in controls else self.unique.source,
            spec.until if "unique_until" in controls else self.unique.until,
        )

    def call_limit(self, key: Any) -> LimitSpec:
        """The decorator's limit with one call's ``concurrency_key``."""
        assert self.limit is not None
        return LimitSpec(self.limit.limit, check_key(key, per_call=True))

    def s(self, *args: Any, **kwargs: Any) -> Step:
        """A workflow step: this task called with the previous step's result
        first, then ``args``; call options (``queue=``...) as for a call."""
        return _step(self, args, kwargs, takes_result=True)

    def si(self, *args: Any, **kwargs: Any) -> Step:
        """A workflow step that ignores the previous step's result."""
        return _step(self, args, kwargs, takes_result=False)

    async def aenqueue(self, *args: Any, **kwargs: Any) -> Task | None:
        """Queue a run from async code, as calling the proxy does:
        ``await send_invoice.aenqueue(42, schedule=60)``."""
        return await sync_to_async(self.__call__, thread_sensitive=True)(*args, **kwargs)

    def bulk(
        self,
        calls: Iterable[Any],
        *,
        schedule: Any = None,
        priority: int | None = None,
        queue: str | None = None,
        verbose_name: str | None = None,
        creator: Any = None,
        repeat: Any = None,
        repeat_until: Any = None,
        retry_delay: Any = None,
        unique: bool | None = None,
        batch_size: int = 1000,
    ) -> list[Task]:
        """Queue many runs at once with multi-row INSERTs; return the saved rows.

        Each item of ``calls`` is a tuple of positional arguments or a
        ``background_task.call(*args, **kwargs)``. The options apply to every
        row, over the decorator's defaults. Nothing is stored if any item is
        invalid. Schedule actions (CHECK_EXISTING, ...) need one call at a time.

        A unique task (or ``unique=True``), or one whose concurrency key is
        a callable, is stored row by row; a unique one stores one row per key:
        the list then holds, for each call, the row it was queued as or
        deduplicated into (one row may stand for several calls).
        """
        # Imported at the first call, once the apps are loaded (it needs the models).
        from background_task.api.enqueue import bulk_schedule, bulk_schedule_each

        merged = TaskSchedule.create(schedule).merge(self.schedule)
        if merged.action != TaskSchedule.SCHEDULE:
            raise ValueError("bulk() cannot apply schedule actions; call the task once per row.")
        spec = self.unique if unique is None else self.call_unique({"unique": unique})
        limits = {"limit": self.limit, "rate": self.rate}
        options: dict[str, Any] = {"batch_size": batch_size, **limits}
        store: Callable[..., list[Task]] = bulk_schedule
        per_call = any(callable(getattr(spec_, "source", None)) for spec_ in limits.values())
        if spec is not None or per_call:
            # Row by row: keys differ per call in ways the template rows cannot hold.
            store, options = bulk_schedule_each, {"unique": spec, **limits}

        def announce(rows: list[Task]) -> None:
            new = rows
            if spec is not None:
                new = list({id(row): row for row in rows if not row.deduplicated}.values())
            if listened(task_created, DBTaskRunner):
                for row in new:
                    task_created.send(sender=DBTaskRunner, task=row)
            if eager():
                for row in new:
                    run_in_process(row)

        return store(
            self.name,
            calls,
            announce=announce,
            **options,
            run_at=merged.run_at,
            priority=merged.priority if priority is None else priority,
            queue=queue or self.queue,
            verbose_name=verbose_name or self.verbose_name,
            creator=creator,
            repeat=repeat,
            repeat_until=repeat_until,
            max_attempts=self.max_attempts,
            timeout=self.timeout,
            on_worker_lost=self.on_worker_lost,
            result_ttl=self.ttl,
            retry_delay=None if retry_delay is None else stored_policy(retry_delay),
        )

    def __str__(self) -> str:
        return f"TaskProxy({self.name})"

    __repr__ = __str__


def _step(proxy: TaskProxy, args: Any, kwargs: Any, *, takes_result: bool) -> Step:
    # Imported here, not at the top: this module is imported before Django's
    # apps are ready (1.2.8's ``background_task.tasks`` path, from a project's
    # AppConfig), and the workflow engine loads the models.
    from background_task.api.workflows import make_step

    return make_step(proxy, args, kwargs, takes_result)
