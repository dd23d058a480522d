"""The registry of task functions and the discovery of ``tasks`` modules.

``tasks`` is 1.2.8's module-level registry object; ``@background`` stores each
decorated function in it by name. The worker only runs names found here.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Mapping, Sequence
from importlib import import_module
from typing import TYPE_CHECKING, Any, overload

from django.utils.module_loading import module_has_submodule

from background_task.api.periodic import (
    DEFAULT_CATCH_UP_LIMIT,
    ScheduleDefinition,
    ScheduleError,
    crontab_of,
    define,
)
from background_task.api.proxy import TaskProxy, limit_spec, unique_spec
from background_task.api.runner import DBTaskRunner, run_task
from background_task.core.coroutines import is_async
from background_task.core.exceptions import TaskDiscoveryError, TaskNotRegistered
from background_task.core.options import pick_ttl, validate_options
from background_task.core.rates import rate_spec
from background_task.core.recurrence import RecurrenceError
from background_task.core.retry import exception_types, make_policy
from background_task.core.schedules import TaskSchedule
from background_task.store.hooks import enqueue_by_name

if TYPE_CHECKING:
    from background_task.store.models import Task

logger = logging.getLogger("background_task.registry")

F = Callable[..., Any]


class Tasks:
    """Name → :class:`TaskProxy`, plus 1.2.8's ``run_task`` and ``run_next_task``."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskProxy] = {}
        self._schedules: dict[str, ScheduleDefinition] = {}
        self._task_proxy_class = TaskProxy
        #: 1.2.8's runner: stores the calls of the tasks decorated here and
        #: claims and runs tasks for :meth:`run_next_task`. A project may set a
        #: ``DBTaskRunner`` subclass here (before decorating its tasks).
        self._runner = DBTaskRunner()

    @overload
    def background(self, name: F) -> TaskProxy: ...

    @overload
    def background(
        self,
        name: str | None = None,
        schedule: Any = None,
        queue: str | None = None,
        remove_existing_tasks: bool = False,
        *,
        priority: int | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
        verbose_name: str | None = None,
        on_worker_lost: str | None = None,
        ttl: Any = None,
        save_results: Any = None,
        retry_delay: Any = None,
        retry_on: Any = None,
        dont_retry_on: Any = None,
        unique: bool | None = None,
        unique_key: Any = None,
        unique_until: str | None = None,
        concurrency_limit: int | None = None,
        concurrency_key: Any = None,
        rate_limit: Any = None,
        rate_key: Any = None,
        atomic: bool = False,
    ) -> Callable[[F], TaskProxy]: ...

    def background(
        self,
        name: Any = None,
        schedule: Any = None,
        queue: str | None = None,
        remove_existing_tasks: bool = False,
        *,
        priority: int | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
        verbose_name: str | None = None,
        on_worker_lost: str | None = None,
        ttl: Any = None,
        save_results: Any = None,
        retry_delay: Any = None,
        retry_on: Any = None,
        dont_retry_on: Any = None,
        unique: bool | None = None,
        unique_key: Any = None,
        unique_until: str | None = None,
        concurrency_limit: int | None = None,
        concurrency_key: Any = None,
        rate_limit: Any = None,
        rate_key: Any = None,
        atomic: bool = False,
    ) -> TaskProxy | Callable[[F], TaskProxy]:
        """Register a function as a task; usable as ``@background`` or ``@background(...)``.

        ``name`` defaults to ``module.function``; ``schedule`` is the default
        delay (seconds, timedelta, datetime, dict or TaskSchedule), ``queue``
        the default queue. ``priority``, ``max_attempts``, ``timeout`` (seconds,
        a hard limit: the process running an overrunning task is killed),
        ``verbose_name`` and ``on_worker_lost`` (``"retry"`` or ``"fail"``:
        what becomes of a run whose worker died) set per-task defaults;
        ``ttl`` (or rpqueue's name ``save_results``) keeps each finished run,
        with its return value, that many seconds (default
        BACKGROUND_TASK_RESULT_TTL), and makes a return value that JSON
        cannot store fail the run. ``retry_delay`` is the wait before each
        retry (seconds, a timedelta, a callable of the attempt number, a
        ``RetryPolicy`` or a dict of its fields; default the
        BACKGROUND_TASK_RETRY_POLICY setting, else 1.2.8's backoff);
        ``retry_on`` (exception classes) retries only those failures and
        ``dont_retry_on`` fails at once on those. ``unique=True`` queues
        nothing while a run with the same key waits (the call returns that
        run): the key is the call's arguments, or ``unique_key`` (a string,
        or a callable given the call's arguments that returns one), kept
        until the run starts (``unique_until="start"``) or finishes
        (``"finish"``). ``concurrency_limit=N`` lets at most N runs with one
        key run at once, across all workers; the key is the task's name, or
        ``concurrency_key`` (a string, or a callable given the call's
        arguments that returns one). ``rate_limit="100/m"`` lets at most 100
        runs with one key start in any minute (per ``s``, ``m``, ``h`` or a
        number of them: ``"10/30s"``), across all workers; ``rate_key`` as
        ``concurrency_key``. ``atomic=True`` runs the function inside the
        database transaction that records its success, so its writes to the
        queue's database commit with its completion or not at all.
        Invalid values raise TypeError or ValueError here, at decoration time.
        """
        if callable(name):
            return self.background()(name)
        task_schedule = TaskSchedule.create(schedule)
        if priority is not None:
            task_schedule = TaskSchedule(priority=priority).merge(task_schedule)
        ttl = pick_ttl(ttl, save_results)
        validate_options(
            name=name,
            queue=queue,
            max_attempts=max_attempts,
            timeout=timeout,
            verbose_name=verbose_name,
            on_worker_lost=on_worker_lost,
            ttl=ttl,
        )
        # Checked here, at decoration time, as the other options are.
        policy = None if retry_delay is None else make_policy(retry_delay)
        retry_on = None if retry_on is None else exception_types(retry_on, "retry_on")
        dont_retry_on = (
            None if dont_retry_on is None else exception_types(dont_retry_on, "dont_retry_on")
        )
        unique_spec(unique, unique_key, unique_until, per_call=False)  # checked now
        limit_spec(concurrency_limit, concurrency_key)
        rate_spec(rate_limit, rate_key)
        if not isinstance(atomic, bool):
            raise TypeError(f"atomic must be True or False, not {atomic!r}.")

        def decorator(fn: F) -> TaskProxy:
            task_name = name or f"{fn.__module__}.{fn.__qualname__}"
            validate_options(name=task_name)
            if atomic and is_async(fn):
                raise TypeError(
                    f"{task_name}: atomic=True runs a task inside a database transaction of "
                    f"the thread that runs it; an async def task runs on an event loop, "
                    f"whose ORM calls go to another thread. Make it a plain def function, "
                    f"or open the transaction inside it (sync_to_async around an atomic block)."
                )
            proxy = self._task_proxy_class(
                task_name,
                fn,
                task_schedule,
                queue,
                remove_existing_tasks,
                self._runner,
                max_attempts=max_attempts,
                timeout=timeout,
                verbose_name=verbose_name,
                on_worker_lost=on_worker_lost,
                ttl=ttl,
                retry_delay=policy,
                retry_on=retry_on,
                dont_retry_on=dont_retry_on,
                # Only when given: a project's TaskProxy subclass may predate them.
                **{  # type: ignore[arg-type]
                    option: value
                    for option, value in (
                        ("unique", unique),
                        ("unique_key", unique_key),
                        ("unique_until", unique_until),
                        ("concurrency_limit", concurrency_limit),
                        ("concurrency_key", concurrency_key),
                        ("rate_limit", rate_limit),
                        ("rate_key", rate_key),
                        ("atomic", atomic or None),
                    )
                    if value is not None
                },
            )
            self.register(proxy)
            return proxy

        return decorator

    def delayed_task(
        self, delay: float = 0, retries: int = 0, ttl: Any = 300, **options: Any
    ) -> Callable[[F], TaskProxy]:
        """autotask's spelling of :meth:`background`: runs ``delay`` seconds after
        each call, with ``retries`` more attempts after the first failure, and
        keeps the result ``ttl`` seconds."""
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an integer >= 0, not {retries!r}.")
        decorator = self.background(schedule=delay, max_attempts=retries + 1, ttl=ttl, **options)
        return decorator

    def periodic_task(
        self,
        seconds: float = 3600,
        start_now: bool = False,
        queue: str | None = None,
        priority: int = 0,
        *,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        name: str | None = None,
        catch_up: str = "once",
        catch_up_limit: int = DEFAULT_CATCH_UP_LIMIT,
        overlap: bool = False,
        **task_options: Any,
    ) -> Callable[[F], TaskProxy]:
        """Register a task and run it every ``seconds`` seconds.

        The first run is one period after the schedule is first synced (at
        once with ``start_now``). ``args``/``kwargs`` are the call's arguments;
        ``queue`` and ``priority`` apply to its runs; other keywords
        (``max_attempts``, ``timeout``, ``on_worker_lost``, ...) are the task's
        options, as for ``@background``. The function can still be queued by
        hand. See the scheduling guide for ``catch_up`` and ``overlap``.
        """
        return self._scheduled(
            dict(seconds=seconds),
            start_now=start_now,
            queue=queue,
            priority=priority,
            args=args,
            kwargs=kwargs,
            name=name,
            catch_up=catch_up,
            catch_up_limit=catch_up_limit,
            overlap=overlap,
            task_options=task_options,
        )

    def cron_task(
        self,
        crontab: str | None = None,
        minutes: Any = None,
        hours: Any = None,
        dow: Any = None,
        months: Any = None,
        dom: Any = None,
        *,
        rrule: str | None = None,
        timezone: str | None = None,
        queue: str | None = None,
        priority: int = 0,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        name: str | None = None,
        start_now: bool = False,
        catch_up: str = "once",
        catch_up_limit: int = DEFAULT_CATCH_UP_LIMIT,
        overlap: bool = False,
        **task_options: Any,
    ) -> Callable[[F], TaskProxy]:
        """Register a task and run it on a crontab, the field form, or an rrule.

        ``@cron_task("0 5 * * tue")``; ``@cron_task(minutes=[0, 30], hours=9)``
        (``dow`` counts from 0 = Monday; a crontab string wins over the
        fields); ``@cron_task(rrule="FREQ=MONTHLY;BYMONTHDAY=-1;BYHOUR=23")``.
        Times are read in ``timezone`` (default BACKGROUND_TASK_SCHEDULE_TIMEZONE).
        Other options as for :meth:`periodic_task`.
        """
        if rrule is not None:
            if crontab is not None:
                raise ScheduleError("cron_task takes a crontab or an rrule, not both.")
            rule: dict[str, Any] = {"rrule": rrule}
        else:
            try:
                rule = {"crontab": crontab_of(crontab, minutes, hours, dow, months, dom)}
            except RecurrenceError as exc:
                raise ScheduleError(f"cron_task: {exc}.") from None
        return self._scheduled(
            rule,
            timezone=timezone,
            start_now=start_now,
            queue=queue,
            priority=priority,
            args=args,
            kwargs=kwargs,
            name=name,
            catch_up=catch_up,
            catch_up_limit=catch_up_limit,
            overlap=overlap,
            task_options=task_options,
        )

    def _scheduled(
        self,
        rule: dict[str, Any],
        *,
        name: str | None,
        task_options: dict[str, Any],
        **options: Any,
    ) -> Callable[[F], TaskProxy]:
        register_task = self.background(name=name, queue=options["queue"], **task_options)

        def decorator(fn: F) -> TaskProxy:
            task_name = name or f"{fn.__module__}.{fn.__qualname__}"
            definition = define(task_name, task_name, **rule, **options)
            proxy = register_task(fn)
            self._schedules[definition.name] = definition
            return proxy

        return decorator

    def schedules(self) -> list[ScheduleDefinition]:
        """The schedules declared with ``@periodic_task`` and ``@cron_task``."""
        return list(self._schedules.values())

    def register(self, proxy: TaskProxy) -> None:
        """Add a proxy; a second task with the same name replaces the first."""
        previous = self._tasks.get(proxy.name)
        if previous is not None and previous.task_function is not proxy.task_function:
            logger.warning(
                "Task name %r registered again (by %s.%s); the last registration wins.",
                proxy.name,
                proxy.task_function.__module__,
                proxy.task_function.__qualname__,
            )
        self._tasks[proxy.name] = proxy

    def get(self, name: str) -> TaskProxy:
        """Return the proxy registered under ``name`` or raise TaskNotRegistered."""
        try:
            return self._tasks[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._tasks, n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise TaskNotRegistered(
                f"No task named {name!r} is registered in this process. Define it with "
                f"@background in an installed app's tasks.py module.{hint}"
            ) from None

    def find(self, name: str) -> TaskProxy | None:
        """The task registered under ``name``, or None."""
        return self._tasks.get(name)

    def enqueue(self, task_name: str, *args: Any, **kwargs: Any) -> Task | None:
        """Queue a call of the task named ``task_name``, as calling it would.

        The caller need not import the task's module: the installed apps'
        ``tasks`` modules are discovered first if they were not yet. The
        call's keywords (``schedule``, ``queue``, ``priority``, ...) work as
        for a direct call. An unknown name raises TaskNotRegistered.
        """
        if task_name not in self._tasks and self is tasks:
            autodiscover()
        return self.get(task_name)(*args, **kwargs)

    def names(self) -> list[str]:
        return sorted(self._tasks)

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def run_task(self, task_name: Task | str, args: Any = None, kwargs: Any = None) -> None:
        """Run one task in this process (1.2.8 API): a Task row, or a name and arguments."""
        run_task(self, task_name, args, kwargs)

    def run_next_task(self, queue: str | None = None) -> bool:
        """Claim and run the next due task here, through ``self._runner``
        (``get_task_to_run``, then ``run_task``); True if one ran (1.2.8 API)."""
        return bool(self._runner.run_next_task(self, queue))


tasks = Tasks()
# ``Task.objects.enqueue(name, ...)`` queues through this registry.
enqueue_by_name.register(tasks.enqueue)


def autodiscover() -> None:
    """Import the ``tasks`` module of every installed app.

    Apps named by package or by AppConfig path are both found. An app without
    a ``tasks`` module is skipped; one whose ``tasks`` module raises on import
    stops discovery with :class:`TaskDiscoveryError` naming the module (1.2.8
    swallowed the error and the tasks silently never ran).
    """
    from django.apps import apps

    for app_config in apps.get_app_configs():
        if not module_has_submodule(app_config.module, "tasks"):
            continue
        module_name = f"{app_config.name}.tasks"
        try:
            import_module(module_name)
        except Exception as exc:
            raise TaskDiscoveryError(
                f"Importing {module_name} failed: {type(exc).__name__}: {exc}"
            ) from exc
