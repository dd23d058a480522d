"""How the executor calls a task's code: one :class:`Invocation` per kind of task.

The executor (:mod:`background_task.runtime.execution`) claims, times,
records and signals; what it means to *call* a row is the invocation's. A
``@background`` function is called with the stored arguments
(:class:`FunctionInvocation`). Another kind of task plugs in with
:func:`register`: a resolver that returns an invocation for the rows it
owns and None for the rest (the django.tasks backend,
:mod:`background_task.contrib.django_tasks`, owns the rows with a
``backend``). The executor never names the integrations.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from background_task.core.coroutines import is_async, resolve
from background_task.core.exceptions import BadTaskRow

if TYPE_CHECKING:
    from background_task.api.registry import Tasks
    from background_task.store.models import Task


class Invocation:
    """One kind of task's call of user code, and what it adds around the outcome.

    The default methods do nothing; :class:`FunctionInvocation` and the
    integrations' subclasses override what they need.
    """

    #: The return value must be JSON data (else the attempt fails for good),
    #: even when the task does not keep its result.
    strict_result: bool = False
    #: A success may be recorded later, in a batch with others
    #: (:meth:`TaskExecutor.flush`), when no receiver would notice.
    deferrable: bool = True
    #: The code runs inside the database transaction that records its
    #: success (``@background(atomic=True)``).
    atomic: bool = False

    def call(self, task: Task, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """Run the task's code with its stored arguments; return its value."""
        raise NotImplementedError

    def is_async(self) -> bool:
        """True when the task's code is a coroutine function: a worker then
        awaits :meth:`acall` on its event loop instead of calling :meth:`call`."""
        return False

    def acall(
        self, task: Task, args: list[Any], kwargs: dict[str, Any]
    ) -> Coroutine[Any, Any, Any]:
        """The coroutine that runs an async task's code with its stored arguments."""
        raise NotImplementedError(f"{type(self).__name__} runs no async code")

    def normalize(self, value: Any) -> Any:
        """The value to store for a successful call's return value."""
        return value

    def succeeded(self, value: Any) -> None:
        """Called once a success was recorded."""

    def failed(self, exc: BaseException, final: bool) -> None:
        """Called inside the ``except`` block once a failure was recorded;
        ``final`` when no attempt follows."""


class FunctionInvocation(Invocation):
    """Calls a registered ``@background`` function. A worker awaits an
    ``async def`` one on its event loop (:meth:`acall`); called through
    :meth:`call` (a run in the caller's process) it runs to completion on an
    event loop of its own."""

    def __init__(self, function: Callable[..., Any], atomic: bool = False) -> None:
        self.function = function
        self.atomic = atomic
        self.deferrable = not atomic  # its success is recorded in its own transaction
        self._async = is_async(function)
        self._signature: inspect.Signature | bool | None = False  # False: not read yet

    def is_async(self) -> bool:
        return self._async

    def acall(
        self, task: Task, args: list[Any], kwargs: dict[str, Any]
    ) -> Coroutine[Any, Any, Any]:
        try:
            coroutine: Coroutine[Any, Any, Any] = self.function(*args, **kwargs)
        except TypeError:
            self.check_arguments(task, args, kwargs)
            raise
        return coroutine

    def call(self, task: Task, args: list[Any], kwargs: dict[str, Any]) -> Any:
        try:
            # An ``async def`` task is run to completion here, on an event
            # loop of its own, never left as an unawaited coroutine.
            return resolve(self.function(*args, **kwargs))
        except TypeError:
            self.check_arguments(task, args, kwargs)
            raise

    def check_arguments(self, task: Task, args: list[Any], kwargs: dict[str, Any]) -> None:
        """Raise BadTaskRow if the stored arguments do not fit the function's signature.

        Run when a call raised TypeError, to tell arguments that never fitted
        (the task's row is bad: no retry) from a TypeError of the task's own
        code. Python binds a call's arguments before running any of its body,
        so checking only then costs nothing on the way to a success.
        """
        if self._signature is False:
            try:
                self._signature = inspect.signature(self.function)
            except (TypeError, ValueError):
                self._signature = None
        signature = self._signature
        if isinstance(signature, inspect.Signature):
            try:
                signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise BadTaskRow(
                    f"Stored arguments do not fit {task.task_name}{signature}: {exc}"
                ) from exc


#: Returns the invocation of a row it owns, None for any other row.
Resolver = Callable[["Task", str], Invocation | None]

_resolvers: list[Resolver] = []


def register(resolver: Resolver) -> Resolver:
    """Let ``resolver`` claim the rows of its kind of task (registering twice is a no-op)."""
    if resolver not in _resolvers:
        _resolvers.append(resolver)
    return resolver


class Invocations:
    """Finds the invocation of each row for one executor, caching the
    function invocations by task name."""

    def __init__(self, registry: Tasks, worker_id: str) -> None:
        self.registry = registry
        self.worker_id = worker_id
        self._functions: dict[str, FunctionInvocation] = {}

    def for_task(self, task: Task) -> Invocation:
        """The invocation that runs ``task``; raises TaskNotRegistered (or an
        integration's error) for a row nobody can run."""
        for resolver in _resolvers:
            found = resolver(task, self.worker_id)
            if found is not None:
                return found
        proxy = self.registry.get(task.task_name)
        function = proxy.task_function
        cached = self._functions.get(task.task_name)
        if cached is None or cached.function is not function:
            cached = self._functions[task.task_name] = FunctionInvocation(
                function, atomic=getattr(proxy, "atomic", False)
            )
        return cached
