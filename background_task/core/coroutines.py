"""Running ``async def`` task code from synchronous code, to completion.

A worker calls a task's function from a plain thread. When that function is
an ``async def`` (or returns an awaitable), calling it only creates a
coroutine; it must be run, or the task would be recorded as done without
having run. :func:`resolve` runs such a value to completion on an event
loop of its own and returns its result.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import async_to_sync, iscoroutinefunction

__all__ = ["is_async", "resolve", "run_to_completion"]


def is_async(function: Callable[..., Any]) -> bool:
    """True for an ``async def`` function (or one marked as a coroutine function)."""
    return iscoroutinefunction(function)


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def resolve(value: Any) -> Any:
    """``value`` itself, or, if it is awaitable, what awaiting it returns.

    With no event loop running in this thread the awaitable runs on a new
    loop through asgiref's ``async_to_sync``: Django's async ORM works in it
    (its ``sync_to_async`` calls come back to this thread and its database
    connection), and a sync ORM call raises ``SynchronousOnlyOperation`` as
    anywhere in async code. Inside a running loop (this thread serves an
    async caller) it runs on a loop in a helper thread while this thread
    waits, so nothing deadlocks.
    """
    if not inspect.isawaitable(value):
        return value
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return async_to_sync(_await)(value)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bgtask-async") as pool:
        return pool.submit(async_to_sync(_await), value).result()


def run_to_completion(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``function`` and, if it is async, run what it returns to completion."""
    return resolve(function(*args, **kwargs))
