"""The registry of task functions and the discovery of ``tasks`` modules.

``tasks`` is 1.2.8's module-level registry object; ``@background`` stores each
decorated function in it by name. The worker only runs names found here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib import import_module
from typing import TYPE_CHECKING, Any, overload

from django.utils.module_loading import module_has_submodule

from background_task.exceptions import TaskDiscoveryError, TaskNotRegistered
from background_task.proxy import TaskProxy, validate_options
from background_task.schedules import TaskSchedule

if TYPE_CHECKING:
    from background_task.models import Task

logger = logging.getLogger(__name__)

F = Callable[..., Any]


class Tasks:
    """Name → :class:`TaskProxy`, plus 1.2.8's ``run_task`` and ``run_next_task``."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskProxy] = {}
        self._task_proxy_class = TaskProxy

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
    ) -> TaskProxy | Callable[[F], TaskProxy]:
        """Register a function as a task; usable as ``@background`` or ``@background(...)``.

        ``name`` defaults to ``module.function``; ``schedule`` is the default
        delay (seconds, timedelta, datetime, dict or TaskSchedule), ``queue``
        the default queue. ``priority``, ``max_attempts``, ``timeout`` (seconds,
        a hard limit: the process running an overrunning task is killed),
        ``verbose_name`` and ``on_worker_lost`` (``"retry"`` or ``"fail"``:
        what becomes of a run whose worker died) set per-task defaults.
        Invalid values raise TypeError or ValueError here, at decoration time.
        """
        if callable(name):
            return self.background()(name)
        task_schedule = TaskSchedule.create(schedule)
        if priority is not None:
            task_schedule = TaskSchedule(priority=priority).merge(task_schedule)
        validate_options(
            name=name,
            queue=queue,
            max_attempts=max_attempts,
            timeout=timeout,
            verbose_name=verbose_name,
            on_worker_lost=on_worker_lost,
        )

        def decorator(fn: F) -> TaskProxy:
            task_name = name or f"{fn.__module__}.{fn.__qualname__}"
            validate_options(name=task_name)
            proxy = self._task_proxy_class(
                task_name,
                fn,
                task_schedule,
                queue,
                remove_existing_tasks,
                max_attempts=max_attempts,
                timeout=timeout,
                verbose_name=verbose_name,
                on_worker_lost=on_worker_lost,
            )
            self.register(proxy)
            return proxy

        return decorator

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
            raise TaskNotRegistered(
                f"No task named {name!r} is registered in this process. Define it with "
                f"@background in an installed app's tasks.py module."
            ) from None

    def names(self) -> list[str]:
        return sorted(self._tasks)

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def run_task(self, task_name: Task | str, args: Any = None, kwargs: Any = None) -> None:
        """Run one task in this process (1.2.8 API): a Task row, or a name and arguments."""
        from background_task.runner import run_task

        run_task(self, task_name, args, kwargs)

    def run_next_task(self, queue: str | None = None) -> bool:
        """Claim and run the next due task; True if one ran (1.2.8 API)."""
        from background_task.runner import run_next_task

        return run_next_task(self, queue)


tasks = Tasks()


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
