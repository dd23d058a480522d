"""The event loop on which a worker runs its ``async def`` tasks, many at once.

A worker that claims an async task starts one :class:`TaskLoop`: an asyncio
event loop on a thread of its own. The worker's thread begins each attempt
(limits, signals, arguments), hands the coroutine to the loop with
:meth:`TaskLoop.submit`, and records the outcome when the returned future
completes, in batches as for threads. The loop thread never touches the
database itself; Django's async ORM calls made by tasks go, as anywhere in
async code, through ``sync_to_async`` to one thread that owns the
connection, which the loop recycles as a worker thread does.

A coroutine ends in one of three ways, each an :class:`Ended`: it returned,
it raised, or it was cancelled (its time limit ran out, the task was
cancelled, or the worker is stopping); the coroutine sees
``asyncio.CancelledError`` and may clean up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connections

from background_task.api.control import CurrentTask, reset_current, set_current
from background_task.core.exceptions import TaskTimeout
from background_task.runtime.connections import CONNECTION_CHECK_INTERVAL, recycle_connections

logger = logging.getLogger("background_task.worker")

CLOSE_TIMEOUT = 5.0  # seconds to wait for the loop's thread to end


@dataclass(frozen=True)
class Job:
    """One run handed to the loop: the task's coroutine and what surrounds it."""

    key: int  # the task's pk
    coroutine: Coroutine[Any, Any, Any]
    timeout: float | None  # seconds
    current: CurrentTask  # what current_task() returns inside it
    describe: Callable[[], str]  # the task, for the message of a timeout
    #: Sets up the context the coroutine runs in (the instruments'); returns its undo.
    enter: Callable[[], Callable[[], None]] | None = None


@dataclass(frozen=True)
class Ended:
    """How a coroutine ended: its return ``value``, or the ``error`` it raised
    (or that describes why it was cancelled)."""

    value: Any = None
    error: BaseException | None = None


class TaskLoop:
    """An event loop on a thread of its own that awaits task coroutines."""

    def __init__(self, name: str = "bgtask-async") -> None:
        self.name = name
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        # Read and written on the loop's thread only.
        self._tasks: dict[int, asyncio.Task[Ended]] = {}
        self._reasons: dict[int, BaseException] = {}
        self._stopped_by: BaseException | None = None  # set by cancel_all()
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        recycler = self._loop.create_task(self._recycle_connections())
        try:
            self._loop.run_forever()
        finally:
            recycler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                self._loop.run_until_complete(recycler)
            self._loop.run_until_complete(_close_orm_connections())
            self._loop.close()

    # -- the worker's thread -------------------------------------------------

    def submit(
        self,
        key: int,
        coroutine: Coroutine[Any, Any, Any],
        *,
        timeout: float | None,
        current: CurrentTask,
        describe: Callable[[], str],
        enter: Callable[[], Callable[[], None]] | None = None,
    ) -> Future[Ended]:
        """Await ``coroutine`` on the loop, as the run ``key`` (the task's pk).

        ``timeout`` (seconds) cancels it when it runs out, and the run ends
        with a :class:`TaskTimeout` naming ``describe()``. The future's
        result is an :class:`Ended`; it never raises.
        """
        future: Future[Ended] = Future()
        job = Job(key, coroutine, timeout, current, describe, enter)
        self._loop.call_soon_threadsafe(self._start, job, future)
        return future

    def cancel(self, key: int, reason: BaseException) -> None:
        """Cancel the run ``key`` if it is still running; it ends with ``reason``."""
        self._loop.call_soon_threadsafe(self._cancel, key, reason)

    def cancel_all(self, reason: BaseException) -> None:
        """Cancel every run still running; each ends with ``reason``."""
        self._loop.call_soon_threadsafe(self._cancel_all, reason)

    def close(self) -> None:
        """Stop the loop (after the runs ended) and close the ORM connection
        its tasks used."""
        if not self._thread.is_alive():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CLOSE_TIMEOUT)

    # -- the loop's thread ---------------------------------------------------

    def _start(self, job: Job, future: Future[Ended]) -> None:
        if self._stopped_by is not None:  # the worker is stopping: never start it
            job.coroutine.close()
            future.set_result(Ended(error=self._stopped_by))
            return
        task = self._loop.create_task(self._await(job))
        self._tasks[job.key] = task
        task.add_done_callback(partial(self._finished, job, future))

    async def _await(self, job: Job) -> Ended:
        token = set_current(job.current)  # in this run's own context only
        leave = job.enter() if job.enter is not None else None
        deadline = asyncio.timeout(job.timeout)
        try:
            async with deadline:
                return Ended(value=await job.coroutine)
        except TimeoutError as exc:
            if deadline.expired():
                return Ended(
                    error=TaskTimeout(f"Task {job.describe()} ran longer than its time limit.")
                )
            return Ended(error=exc)
        except asyncio.CancelledError as exc:
            return Ended(error=self._reasons.get(job.key, exc))
        except BaseException as exc:  # a task's failure never ends the loop
            return Ended(error=exc)
        finally:
            if leave is not None:
                leave()
            reset_current(token)

    def _finished(self, job: Job, future: Future[Ended], task: asyncio.Task[Ended]) -> None:
        self._tasks.pop(job.key, None)
        reason = self._reasons.pop(job.key, None)
        if task.cancelled():  # cancelled before its first step: the coroutine never ran
            job.coroutine.close()
            future.set_result(Ended(error=reason or asyncio.CancelledError()))
        else:
            future.set_result(task.result())

    def _cancel(self, key: int, reason: BaseException) -> None:
        task = self._tasks.get(key)
        if task is not None and not task.done():
            self._reasons[key] = reason
            task.cancel()

    def _cancel_all(self, reason: BaseException) -> None:
        self._stopped_by = reason
        for key in list(self._tasks):
            self._cancel(key, reason)

    async def _recycle_connections(self) -> None:
        """Close the ORM connection of the tasks' ``sync_to_async`` thread when it
        failed or outlived ``CONN_MAX_AGE``, as a worker thread does."""
        while True:
            await asyncio.sleep(CONNECTION_CHECK_INTERVAL)
            try:
                await sync_to_async(recycle_connections, thread_sensitive=True)()
            except Exception as exc:
                logger.warning("Could not recycle the async tasks' connections (%s).", exc)


async def _close_orm_connections() -> None:
    try:
        await sync_to_async(connections.close_all, thread_sensitive=True)()
    except Exception as exc:
        logger.warning("Could not close the async tasks' connections (%s).", exc)
