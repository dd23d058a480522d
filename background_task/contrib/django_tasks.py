"""A backend for Django's own tasks framework (``django.tasks``, Django 6.0+).

::

    TASKS = {
        "default": {
            "BACKEND": "background_task.backends.DatabaseBackend",
            "QUEUES": ["default", "emails"],
            "OPTIONS": {"MAX_ATTEMPTS": 3},
        }
    }

Tasks defined with ``@django.tasks.task`` are stored in the same tables as
``@background`` tasks (``task_name`` holds the task's module path and
``backend`` its alias) and run by ``manage.py process_tasks``, with the same
claiming, heartbeats, time limits and admin. Results are readable from any
process. Importing this module needs Django 6.0 or later.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

import django
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

if django.VERSION < (6, 0):
    raise ImproperlyConfigured(
        f"background_task.backends.DatabaseBackend is a backend for django.tasks, which needs "
        f"Django 6.0 or later; this is Django {django.get_version()}. @background tasks work "
        f"on any supported Django without it."
    )

from django.tasks import Task as DjangoTask
from django.tasks import TaskContext, TaskResult, TaskResultStatus, task_backends
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import TaskError
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued, task_finished, task_started
from django.utils import timezone
from django.utils.json import normalize_json
from django.utils.module_loading import import_string

from background_task.core import instruments, status
from background_task.core.conf import app_settings
from background_task.core.coroutines import is_async
from background_task.core.exceptions import InvalidTaskError, ResultNotSerializable, TaskNotFound
from background_task.core.options import validate_options
from background_task.runtime import invocation
from background_task.runtime.invocation import Invocation
from background_task.store.routing import deferring_to, queue_alias

if TYPE_CHECKING:
    from background_task.store.models import BaseTask, Task

logger = logging.getLogger("background_task.backends")

_P = ParamSpec("_P")
_R = TypeVar("_R")
if TYPE_CHECKING:  # the classes are generic only in the type stubs
    AnyTask = DjangoTask[..., Any]
    AnyResult = TaskResult[..., Any]

STATUS_MAP = {
    status.WAITING: TaskResultStatus.READY,
    status.RUNNING: TaskResultStatus.RUNNING,
    status.DONE: TaskResultStatus.SUCCESSFUL,
    status.ERROR: TaskResultStatus.FAILED,
    status.CANCELLED: TaskResultStatus.FAILED,
}
TASK_NAME_MAX_LENGTH = 190
QUEUE_MAX_LENGTH = 190
BACKEND_MAX_LENGTH = 32


if django.VERSION >= (6, 1):

    @dataclass(frozen=True, slots=True, kw_only=True)
    class BackgroundTask(DjangoTask):  # type: ignore[type-arg]
        """The backend's task class (Django 6.1+): ``@task(max_attempts=5,
        timeout=60, on_worker_lost="fail")`` sets those options per task."""

        max_attempts: int | None = None
        timeout: float | None = None
        on_worker_lost: str | None = None

    TASK_CLASS: type[Any] = BackgroundTask
else:
    TASK_CLASS = DjangoTask

__all__ = [
    "STATUS_MAP",
    "TASK_CLASS",
    "DatabaseBackend",
    "Run",
    "backend_for",
    "rebuild_task",
    "serving",
]
if django.VERSION >= (6, 1):
    __all__ += ["BackgroundTask"]


class DatabaseBackend(BaseTaskBackend):
    """Stores ``django.tasks`` tasks as background_task rows; ``process_tasks`` runs them.

    OPTIONS: ``MAX_ATTEMPTS`` (default 1: one attempt, as Django's tasks
    expect; more retry with backoff, READY in between), ``TIMEOUT`` (a hard
    time limit in seconds) and ``DATABASE`` (the database alias; by default
    the one Django's routers choose for the queue's models).
    """

    supports_defer = True
    supports_priority = True
    supports_async_task = True
    supports_get_result = True
    task_class = TASK_CLASS

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        # No models or queries here: the backend is built while task modules import.
        self.max_attempts = self.options.get("MAX_ATTEMPTS", 1)
        self.timeout = self.options.get("TIMEOUT")
        self.database: str | None = self.options.get("DATABASE")

    def validate_task(self, task: AnyTask) -> None:
        super().validate_task(task)
        if task.func.__module__ == "__main__":
            raise InvalidTask(
                "Tasks defined in __main__ cannot be run by a worker; define them in a module."
            )
        if len(task.module_path) > TASK_NAME_MAX_LENGTH:
            raise InvalidTask(
                f"Task path {task.module_path[:40]!r}... is longer than {TASK_NAME_MAX_LENGTH} "
                f"characters."
            )
        if len(task.queue_name) > QUEUE_MAX_LENGTH:
            raise InvalidTask(f"Queue name is longer than {QUEUE_MAX_LENGTH} characters.")
        try:
            validate_options(
                max_attempts=getattr(task, "max_attempts", None),
                timeout=getattr(task, "timeout", None),
                on_worker_lost=getattr(task, "on_worker_lost", None),
            )
        except (TypeError, ValueError) as exc:
            raise InvalidTask(str(exc)) from None

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        return list(self._problems())

    def _problems(self) -> Iterator[checks.CheckMessage]:
        from django.apps import apps

        if not apps.is_installed("background_task"):
            yield checks.Error(
                f"TASKS[{self.alias!r}] uses {type(self).__name__}, but background_task is not "
                f"in INSTALLED_APPS.",
                id="background_task.E020",
            )
        if not app_settings.PRIORITY_DESCENDING:
            yield checks.Error(
                "BACKGROUND_TASK_PRIORITY_ORDERING = 'ASC' runs smaller priorities first, but "
                "django.tasks defines larger priorities as more urgent.",
                hint="Remove the setting (or set 'DESC') while the django.tasks backend is used.",
                id="background_task.E021",
            )
        if len(self.alias) > BACKEND_MAX_LENGTH:
            yield checks.Error(
                f"The TASKS alias {self.alias[:40]!r} is longer than {BACKEND_MAX_LENGTH} "
                f"characters.",
                id="background_task.E022",
            )
        attempts = self.max_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            yield checks.Error(
                f"TASKS[{self.alias!r}]['OPTIONS']['MAX_ATTEMPTS'] must be a positive "
                f"integer, not {attempts!r}.",
                id="background_task.E023",
            )

    # -- enqueue and results ---------------------------------------------------------

    def enqueue(
        self, task: DjangoTask[_P, _R], args: list[Any], kwargs: dict[str, Any]
    ) -> TaskResult[_P, _R]:
        from background_task.store.models import build_task

        self.validate_task(task)
        normalized: Any = normalize_json({"args": list(args), "kwargs": dict(kwargs)})
        now = timezone.now()
        row = build_task(
            task.module_path,
            normalized["args"],
            normalized["kwargs"],
            now=now,
            run_at=task.run_after,
            priority=task.priority,
            queue=task.queue_name,
            max_attempts=getattr(task, "max_attempts", None) or self.max_attempts,
            timeout=getattr(task, "timeout", None) or self.timeout,
            on_worker_lost=getattr(task, "on_worker_lost", None),
        )
        row.backend = self.alias
        alias = queue_alias(self.database)
        result = cast("TaskResult[_P, _R]", self.result_of(row, task))

        def store() -> None:
            row.save(using=alias, force_insert=True)
            if instruments.ACTIVE:
                instruments.queued([row])
            _send(task_enqueued, type(self), result)  # stored already: a receiver cannot undo it

        later = deferring_to(alias)
        if later is None:
            store()
        else:  # inside a transaction on another database: stored when it commits
            transaction.on_commit(store, using=later)
        return result

    async def aenqueue(
        self, task: DjangoTask[_P, _R], args: list[Any], kwargs: dict[str, Any]
    ) -> TaskResult[_P, _R]:
        from asgiref.sync import sync_to_async

        result: TaskResult[_P, _R] = await sync_to_async(self.enqueue, thread_sensitive=True)(
            task, args, kwargs
        )
        return result

    def get_result(self, result_id: str) -> AnyResult:
        from background_task.store.models import find_task

        try:
            row = find_task(str(result_id), using=self.database)
        except TaskNotFound:
            raise TaskResultDoesNotExist(result_id) from None
        if row.backend != self.alias:
            raise TaskResultDoesNotExist(result_id)
        return self.result_of(row)

    def result_of(self, row: BaseTask, task: AnyTask | None = None) -> AnyResult:
        """The TaskResult of a stored row, at whatever stage it is."""
        if task is None:
            task = rebuild_task(row)
        args, kwargs = row.params()
        worker_ids = list(row.worker_ids or [])
        if row.status == status.RUNNING and row.locked_by:
            worker_ids.append(row.locked_by)  # the running attempt counts (context.attempt)
        result: AnyResult = TaskResult(
            task=task,
            id=row.task_id,
            status=STATUS_MAP[row.status],
            enqueued_at=row.enqueued_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
            last_attempted_at=row.last_attempted_at,
            args=args,
            kwargs=kwargs,
            backend=self.alias,
            errors=[
                TaskError(
                    exception_class_path=error.get("exception_class_path", ""),
                    traceback=error.get("traceback", ""),
                )
                for error in (row.errors or [])
            ],
            worker_ids=worker_ids,
        )
        if row.status == status.DONE:
            object.__setattr__(result, "_return_value", row.result)
        return result


def rebuild_task(row: BaseTask) -> AnyTask:
    """The django.tasks Task a row names, with its stored options.

    Only a ``django.tasks.Task`` is ever accepted: a row naming any other
    importable object raises InvalidTask without calling it. If the stored
    queue or priority no longer validates (QUEUES changed), the bare task
    is returned, so old results stay readable.
    """
    try:
        found = import_string(row.task_name)
    except ImportError as exc:
        raise InvalidTask(f"Task {row.task_name!r} cannot be imported: {exc}") from exc
    if not isinstance(found, DjangoTask):
        raise InvalidTask(f"{row.task_name!r} is not a django.tasks Task; refusing to run it.")
    try:
        return found.using(
            priority=row.priority,
            queue_name=row.queue or found.queue_name,
            run_after=row.scheduled_at if row.scheduled_at != row.enqueued_at else None,
            backend=row.backend,
        )
    except InvalidTask:
        return found


def backend_for(row: Task) -> DatabaseBackend:
    backend = task_backends[row.backend or ""]
    if not isinstance(backend, DatabaseBackend):
        raise InvalidTask(
            f"TASKS[{row.backend!r}] is {type(backend).__name__}, not DatabaseBackend."
        )
    return backend


def serving(aliases: Sequence[str] | None = None) -> list[str]:
    """The TASKS aliases a worker runs rows of: ``aliases``, or every alias whose
    backend is a DatabaseBackend."""
    from django.conf import settings

    configured = getattr(settings, "TASKS", {})
    if aliases is None:
        aliases = [
            alias
            for alias, params in configured.items()
            if issubclass(import_string(params.get("BACKEND", "")), DatabaseBackend)
        ]
    for alias in aliases:
        backend_for_alias = task_backends[alias]
        if not isinstance(backend_for_alias, DatabaseBackend):
            raise InvalidTask(f"TASKS[{alias!r}] does not use DatabaseBackend.")
    return list(aliases)


class Run(Invocation):
    """One attempt of a django.tasks row: builds its TaskResult and sends the
    signals in the order Django's own backends use. A receiver that raises is
    logged and never changes the stored outcome.

    The executor finds it through :func:`run_of`, registered with
    :mod:`background_task.runtime.invocation`."""

    # Django's results hold JSON data only, and each outcome signals at once.
    strict_result = True
    deferrable = False

    def __init__(self, row: Task, worker_id: str) -> None:
        self.row = row
        try:
            self.backend = backend_for(row)
            self.task = rebuild_task(row)
        except Exception as exc:  # InvalidTask, an unknown alias, an import error
            # Unable to start: fails for good, with no TaskResult to signal.
            raise InvalidTaskError(f"Cannot run {row.task_name!r}: {exc}") from exc
        running = timezone.now()
        self.result = self.backend.result_of(row, self.task)
        object.__setattr__(self.result, "status", TaskResultStatus.RUNNING)
        object.__setattr__(self.result, "last_attempted_at", row.last_attempted_at or running)
        object.__setattr__(self.result, "started_at", row.started_at or running)
        object.__setattr__(self.result, "worker_ids", [*(row.worker_ids or []), worker_id])

    def call(self, task: Task, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        _send(task_started, type(self.backend), self.result)
        if self.task.takes_context:
            return self.task.call(TaskContext(task_result=self.result), *args, **kwargs)
        return self.task.call(*args, **kwargs)

    def is_async(self) -> bool:
        return is_async(self.task.func)

    def acall(
        self, task: Task, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> Coroutine[Any, Any, Any]:
        """The coroutine of an ``async def`` task function, for the worker's event loop."""
        _send(task_started, type(self.backend), self.result)
        coroutine: Coroutine[Any, Any, Any]
        if self.task.takes_context:
            coroutine = self.task.func(TaskContext(task_result=self.result), *args, **kwargs)
        else:
            coroutine = self.task.func(*args, **kwargs)
        return coroutine

    def normalize(self, value: Any) -> Any:
        """The return value as JSON data; anything else fails the attempt."""
        try:
            return normalize_json(value)
        except TypeError as exc:
            raise ResultNotSerializable(
                f"{self.row.task_name} returned a {type(value).__name__}, which JSON cannot "
                f"store ({exc})."
            ) from None

    def succeeded(self, value: Any) -> None:
        object.__setattr__(self.result, "status", TaskResultStatus.SUCCESSFUL)
        object.__setattr__(self.result, "finished_at", timezone.now())
        object.__setattr__(self.result, "_return_value", value)
        _send(task_finished, type(self.backend), self.result)

    def failed(self, exc: BaseException, final: bool) -> None:
        """Call inside the ``except`` block, after the failure was recorded: on
        the final attempt task_finished is sent there, so Django's logging
        receiver finds the traceback in ``sys.exc_info()``; between attempts
        the status is READY and nothing is sent."""
        error = TaskError(
            exception_class_path=f"{type(exc).__module__}.{type(exc).__qualname__}",
            traceback="".join(traceback.format_exception(exc)),
        )
        object.__setattr__(self.result, "errors", [*self.result.errors, error])
        if not final:
            object.__setattr__(self.result, "status", TaskResultStatus.READY)
            return
        object.__setattr__(self.result, "status", TaskResultStatus.FAILED)
        object.__setattr__(self.result, "finished_at", timezone.now())
        _send(task_finished, type(self.backend), self.result)


@invocation.register
def run_of(row: Task, worker_id: str) -> Run | None:
    """The invocation of a django.tasks row (one with a ``backend``); None for others."""
    return Run(row, worker_id) if row.backend else None


def _send(signal: Any, sender: type, result: AnyResult) -> None:
    for receiver, response in signal.send_robust(sender=sender, task_result=result):
        if isinstance(response, Exception):
            logger.error(
                "django.tasks signal receiver %r raised %r; the task's outcome is unchanged.",
                receiver,
                response,
                exc_info=(type(response), response, response.__traceback__),
            )
