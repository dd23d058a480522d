"""The worker loop behind ``process_tasks``: claim, run, record, repeat.

One :class:`Worker` is one process. It claims due tasks in batches sized to
its free capacity (``threads``), runs them inline (one thread) or on a thread
pool, and stops cleanly on SIGTERM/SIGINT: no more claims, claimed tasks
that have not started go straight back to the queue, running tasks get
``shutdown_timeout`` seconds to finish. A second signal stops at once.

``async def`` tasks run on an event loop of the worker's own
(:mod:`background_task.runtime.eventloop`), up to ``async_concurrency`` at
once, claimed separately and sized to that capacity; the loop starts with
the first of them, so a worker without async tasks runs exactly as before.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime, timedelta
from functools import partial
from queue import Empty, SimpleQueue
from typing import Any

from django.db import DatabaseError, connections
from django.utils import timezone

from background_task.api.control import CurrentTask
from background_task.api.registry import Tasks
from background_task.api.registry import tasks as default_registry
from background_task.api.runner import DBTaskRunner, custom_runner
from background_task.core import status
from background_task.core.conf import app_settings
from background_task.core.coroutines import is_async
from background_task.core.exceptions import TaskCancelled, TaskNotRegistered
from background_task.runtime import scheduler
from background_task.runtime.connections import recycle_connections
from background_task.runtime.eventloop import Ended, TaskLoop
from background_task.runtime.execution import (
    NOT_STARTED,
    TRANSIENT_DB_ERRORS,
    Handover,
    Outcome,
    Run,
    TaskExecutor,
    WorkerStopped,
    close_connection,
)
from background_task.runtime.fencing import SelfFence
from background_task.runtime.invocation import Invocation
from background_task.runtime.jsonlog import set_worker_id
from background_task.runtime.liveness import Liveness, recover_orphans
from background_task.runtime.slots import TaskSlots
from background_task.runtime.stopping import SignalStops
from background_task.runtime.upkeep import Upkeep
from background_task.store import limits, metrics
from background_task.store.claim import ClaimRequest, get_strategy
from background_task.store.ids import make_worker_id
from background_task.store.models import Task
from background_task.store.pausing import paused_names
from background_task.store.pruning import prune_expired
from background_task.store.routing import queue_alias
from background_task.store.vacuum import table_vacuum

logger = logging.getLogger("background_task.worker")

SCHEDULE_CHECK_INTERVAL = 1.0  # seconds between looks for due schedules
MAINTENANCE_INTERVAL = 30.0  # seconds between sweeps for expired claims and unknown names
MAINTENANCE_BATCH = 100  # rows handled per sweep
MAX_OUTAGE_BACKOFF = 30.0  # seconds
TARGET_BATCH_SECONDS = 0.5  # work a claimed batch should hold per thread
MAX_BATCH = 100  # tasks claimed at once, at most
DURATION_SMOOTHING = 0.2  # weight of the newest task in the mean duration
FLUSH_EVERY_TASKS = 50  # deferred successes recorded together, at most
FLUSH_EVERY_SECONDS = 0.1  # longest a success waits to be recorded
SAMPLER_JOIN_TIMEOUT = 5.0  # seconds a stopping worker waits for its queue sample (or upkeep)
MIN_DUE_WAIT = 0.01  # seconds; the shortest wait for the next scheduled task
PAUSE_CHECK_INTERVAL = 1.0  # seconds a read of the paused queues is used for claims
MAX_ASYNC_BATCH = 500  # async tasks claimed at once, at most
ASYNC_POLL_INTERVAL = 0.5  # seconds between claims while async tasks run and room is left
ASYNC_RECHECK_INTERVAL = 0.1  # seconds an empty async claim is not repeated (unless woken)
ASYNC_CANCEL_CHECK_INTERVAL = 1.0  # seconds between looks for cancelled async tasks
ASYNC_KILL_GRACE = 5.0  # seconds past its timeout before an async task's process is killed
ASYNC_CANCEL_GRACE = 5.0  # seconds cancelled coroutines get to clean up at shutdown


class Worker(SignalStops):
    """Runs due tasks until stopped, or as the run-length options say."""

    def __init__(
        self,
        *,
        queues: Sequence[str | None] | None = None,
        sleep: float = 5.0,
        duration: float = 0.0,
        burst: bool = False,
        max_tasks: int | None = None,
        threads: int = 1,
        async_concurrency: int | None = None,
        registry: Tasks | None = None,
        using: str | None = None,
        clock: Callable[[], datetime] = timezone.now,
        shutdown_timeout: float | None = None,
        slots: TaskSlots | None = None,
        supervisor_id: str | None = None,
        parent_pid: int | None = None,
        backends: Sequence[str] = (),
    ) -> None:
        using = queue_alias(using)
        self.queues = list(queues) if queues is not None else None
        #: ``django.tasks`` backend aliases whose rows this worker runs.
        self.backends = list(backends)
        self.sleep = sleep
        self.duration = duration
        self.burst = burst
        self.max_tasks = max_tasks
        self.threads = max(1, threads)
        #: ``async def`` tasks awaited at once on this worker's event loop.
        self.async_concurrency = max(
            1, app_settings.ASYNC_CONCURRENCY if async_concurrency is None else async_concurrency
        )
        if slots is not None and len(slots.extra) < self.async_concurrency:
            raise ValueError(
                f"TaskSlots has {len(slots.extra)} slots for async tasks; "
                f"async_concurrency={self.async_concurrency} needs as many."
            )
        self.registry = registry or default_registry
        self.using = using
        self.clock = clock
        self.shutdown_timeout = (
            app_settings.SHUTDOWN_TIMEOUT if shutdown_timeout is None else shutdown_timeout
        )
        self.worker_id = make_worker_id()
        self.stopping = threading.Event()
        self.force_stop = False
        if slots is not None:
            slots.set_owner(self.worker_id)
        self.executor = TaskExecutor(
            self.registry,
            self.worker_id,
            using=using,
            clock=clock,
            should_stop=self.stopping.is_set,
            slots=slots,
        )
        # Tasks blocked on a slot this worker gives back are woken at its
        # next flush, with those of the other slots it gave back since.
        self.executor.batch_wakes = True
        self.supervisor_id = supervisor_id
        self.parent_pid = parent_pid
        #: Set while :meth:`run` heartbeats; bare :meth:`step` calls do not register.
        self.liveness: Liveness | None = None
        self.strategy = get_strategy(using)
        #: A project's runner (``tasks._runner``) that overrides how 1.2.8 claims
        #: or runs a task: this worker then goes through it, one task at a time.
        self.custom_runner = custom_runner(self.registry)
        self.processed = 0
        self.claimed = 0
        self._pool: ThreadPoolExecutor | None = None
        self._running: dict[Future[Any], Task] = {}
        # Async tasks: the loop (started by the first one), the runs it
        # awaits, the futures that completed, the free supervisor slots.
        self._loop: TaskLoop | None = None
        self._coroutines: dict[Future[Ended], Run] = {}
        self._completed: SimpleQueue[Future[Any]] = SimpleQueue()
        self._completion = threading.Event()  # set whenever a run completes
        self._async_slots: list[int] = list(reversed(slots.extra)) if slots is not None else []
        self._kinds: tuple[tuple[str, ...], list[str], list[str]] = ((), [], [])
        self._cancel_checked = float("-inf")  # monotonic seconds
        self._async_recheck_at = 0.0  # monotonic seconds; see _claim
        self._async_skipped = False  # the last claim left async tasks for later
        self._currents: dict[int, CurrentTask] = {}  # by task pk, of the runs on the loop
        # Connections opened by pool threads, by thread, to close at shutdown.
        self._thread_connections: dict[int, list[Any]] = {}
        self._last_maintenance = float("-inf")
        self._next_schedule_check = 0.0  # monotonic seconds
        self._next_sample: datetime | None = None  # start of the next minute to sample
        self._sampler: threading.Thread | None = None
        self._upkeep: Upkeep | None = None
        self._schedules_synced = False
        self._schedule_due_in: float | None = None  # seconds from the last check
        self._task_due_in: float | None = None  # seconds to the next waiting task's run_at
        self._woken = False  # the next step follows an idle wait (housekeeping done)
        self._paused: tuple[str | None, ...] = ()  # paused queues, read at _paused_read
        self._paused_read = float("-inf")  # monotonic seconds
        self._retried_at_once = False  # a lost connection was retried without waiting
        self._mean_duration: float | None = None  # seconds, smoothed over recent tasks
        self._outage_delay = 0.0
        self._first_signal_at = float("-inf")
        self._signalled = False
        self._stop_pipe = None
        self._replaced = None

    # -- the loop ----------------------------------------------------------

    def run(self) -> None:
        """Process tasks until stopped, the duration ends, or (burst) nothing is due."""
        if threading.current_thread() is threading.main_thread():
            self.install_signal_handlers()
        started = time.monotonic()
        set_worker_id(self.worker_id)
        async_names = self._names()[1]
        logger.info(
            "Worker %s started (queues: %s, threads: %d, %stasks: %d registered)",
            self.worker_id,
            ", ".join(q or "<default>" for q in self.queues) if self.queues is not None else "all",
            self.threads,
            f"async concurrency: {self.async_concurrency}, " if async_names else "",
            len(self.registry.names()),
        )
        if not self.registry.names():
            logger.warning(
                "No tasks are registered in this worker: define them with @background in an "
                "installed app's tasks.py module."
            )
        if self.threads > 1:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="bgtask")
        fence = self._self_fence()
        self.liveness = Liveness(
            self.worker_id,
            queues=self.queues,
            concurrency=self.threads,
            supervisor_id=self.supervisor_id,
            using=self.using,
            executor=TaskExecutor(
                self.registry, self.worker_id, using=self.using, clock=self.clock
            ),
            parent_pid=self.parent_pid,
            on_orphaned=self.stop,
            on_renewed=fence.renewed if fence is not None else None,
        )
        self.liveness.start()
        if fence is not None:
            fence.start()
        self._upkeep = Upkeep(
            self.using,
            self.clock,
            vacuum=table_vacuum(self.using, app_settings.VACUUM_AFTER),
            finished=lambda: self.processed,
        )
        self._upkeep.start()
        try:
            while not self.stopping.is_set():
                if self.duration > 0 and time.monotonic() - started > self.duration:
                    break
                if self.max_tasks is not None and self.claimed >= self.max_tasks:
                    break
                claimed = self._guarded(self.step)
                if claimed is None:
                    continue  # database outage, already waited
                if claimed == 0:
                    if self.burst and self._async_skipped:
                        # Its async claim waited for its recheck interval: look
                        # once more before deciding that nothing is due.
                        time.sleep(max(0.0, self._async_recheck_at - time.monotonic()))
                        continue
                    if self.burst and not (self._running or self._coroutines):
                        break
                    self._idle()
        except WorkerStopped:
            pass
        finally:
            self._shutdown()
            if self._sampler is not None:
                self._sampler.join(SAMPLER_JOIN_TIMEOUT)
            if self._upkeep is not None:
                self._upkeep.stop(SAMPLER_JOIN_TIMEOUT)
            if fence is not None:
                fence.stop()  # its runs are over: nothing left to fence
            self.liveness.stop()
            self.liveness = None
            self._close_stop_pipe()
            self.restore_signal_handlers()
        logger.info("Worker %s stopped after %d task(s).", self.worker_id, self.processed)

    def _guarded(self, action: Callable[[], int]) -> int | None:
        """Run one step; on a database outage log, back off and return None."""
        try:
            result = action()
        except TRANSIENT_DB_ERRORS as exc:
            close_connection(self.using)
            if not self._outage_delay and not self._retried_at_once:
                # Often just a connection the server dropped while idle: retry at once.
                self._retried_at_once = True
                logger.info("Database connection lost (%s); reconnecting.", exc)
                return None
            self._outage_delay = min(max(self._outage_delay * 2, 1.0), MAX_OUTAGE_BACKOFF)
            logger.warning("Database unavailable (%s); retrying in %.0fs.", exc, self._outage_delay)
            self.stopping.wait(self._outage_delay)
            return None
        if self._outage_delay:
            logger.info("Database reachable again.")
            self._outage_delay = 0.0
        self._retried_at_once = False
        return result

    def batch_size(self) -> int:
        """How many tasks to claim now: free capacity, plus a short prefetch.

        Once task durations are known, a batch holds about
        ``TARGET_BATCH_SECONDS`` of work per thread (at most ``MAX_BATCH``),
        so fast tasks are claimed many at a time while a slow task never
        holds claims that another worker could start sooner.
        """
        wanted = self.threads
        if self._mean_duration is not None:
            per_thread = int(TARGET_BATCH_SECONDS / max(self._mean_duration, 1e-4))
            wanted = min(MAX_BATCH, max(1, per_thread) * self.threads)
        limit = max(0, wanted - len(self._running))
        if self.max_tasks is not None:
            limit = min(limit, self.max_tasks - self.claimed)
        return limit

    def async_batch_size(self) -> int:
        """How many async tasks to claim now: the free room on the event loop.

        While coroutines run, a claim waits until a tenth of the room is
        free, so that a busy loop claims in batches rather than one query
        per finished task."""
        room = self.async_concurrency - len(self._coroutines)
        if self._coroutines and room < min(self.async_concurrency // 10, MAX_ASYNC_BATCH // 10):
            return 0
        limit = min(room, MAX_ASYNC_BATCH)
        if self.max_tasks is not None:
            limit = min(limit, self.max_tasks - self.claimed)
        return max(0, limit)

    def _names(self) -> tuple[list[str], list[str]]:
        """The registered task names, split into sync and ``async def`` ones."""
        names = self.registry.names()
        key = tuple(names)
        if key != self._kinds[0]:
            found = {name for name in names if is_async(self.registry.get(name).task_function)}
            sync = [name for name in names if name not in found]
            self._kinds = (key, sync, [name for name in names if name in found])
        return self._kinds[1], self._kinds[2]

    def _record_duration(self, seconds: float) -> None:
        if self._mean_duration is None:
            self._mean_duration = seconds
        else:
            self._mean_duration += DURATION_SMOOTHING * (seconds - self._mean_duration)

    def step(self) -> int:
        """Do the housekeeping that is due, claim what fits and run or dispatch it.

        A step that follows a wake-up skips the housekeeping: the idle
        worker did it before it went to sleep, and the tasks that woke it
        should not wait for it.
        """
        woken, self._woken = self._woken, False
        if self._running:
            self._reap({future for future in self._running if future.done()})
        if self._coroutines:
            self._reap_coroutines()
            self._cancel_requested_coroutines()
        if self.executor.pending:
            # Before claiming: recording them may queue tasks (a workflow's
            # next steps) that this claim should see.
            self.executor.flush()
        now = self.clock()
        if not woken:
            self.housekeeping(now)
        if self.custom_runner is not None:
            return self._step_through(self.custom_runner)
        batch, empty = self._claim(now, woken)
        if not batch and not (self._running or self._coroutines) and not empty:
            # Nothing due: note when the next waiting task is, so an idle
            # worker wakes for it instead of up to --sleep seconds late.
            first = self.strategy.next_run_at(now)
            self._task_due_in = None if first is None else (first - now).total_seconds()
        self.claimed += len(batch)
        # The concurrency slot of the last inline run, kept for the next
        # one to give back in the transaction that takes its own.
        handed: Handover | None = None
        try:
            for index, task in enumerate(batch):
                if self.stopping.is_set():
                    self._release(batch[index:])
                    break
                invocation = self._invocation(task)
                awaited = invocation is not None and invocation.is_async()
                if (awaited or self._pool is not None) and handed is not None:
                    self.executor.free_handover(handed)
                    handed = None
                if awaited and self._await(task, invocation):  # type: ignore[arg-type]
                    continue
                if self._pool is not None:
                    future = self._pool.submit(self._execute_in_thread, task, invocation)
                    future.add_done_callback(self._on_completed)
                    self._running[future] = task
                    continue
                following = batch[index + 1] if index + 1 < len(batch) else None
                try:
                    outcome = self.executor.execute(
                        task,
                        defer_success=True,
                        invocation=invocation,
                        handed=handed,
                        keep_slot=following is not None and following.concurrency_limit is not None,
                    )
                except WorkerStopped:
                    self._release(batch[index + 1 :])
                    raise
                finally:
                    handed = None  # the run gave it back
                handed = outcome.handover
                if outcome.result in NOT_STARTED:
                    continue
                self.processed += 1
                self._record_duration(outcome.duration)
                self._flush_if_due()
                recycle_connections()
        finally:
            if handed is not None:
                self.executor.free_handover(handed)
            # Successes are never held past the batch that produced them.
            self.executor.flush()
        return len(batch)

    def settle(self, timeout: float | None = None) -> None:
        """Wait for the tasks this worker runs on its threads or its event loop
        and record their outcomes, then stop its event loop (the next async
        task starts a new one). For callers of :meth:`step` outside
        :meth:`run`, which does this itself when it stops."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._running or self._coroutines:
            if deadline is not None and time.monotonic() >= deadline:
                break
            self._record_ended(0.05)
        self.executor.flush()
        if self._loop is not None and not self._coroutines:
            self._loop.close()
            self._loop = None

    def _self_fence(self) -> SelfFence | None:
        """The watchdog that kills this process when it is cut off from the
        database while holding tasks (see :mod:`background_task.runtime.fencing`):
        for supervised workers (a supervisor starts the next one) on a server
        database, unless BACKGROUND_TASK_SELF_FENCING is False."""
        if self.supervisor_id is None or not app_settings.SELF_FENCING:
            return None
        if connections[self.using].vendor == "sqlite":
            return None  # one host: a live worker is never presumed lost
        return SelfFence(
            self.worker_id,
            app_settings.FENCE_AFTER,
            app_settings.WORKER_LOST_AFTER,
            holds=lambda: self.claimed > 0,
        )

    def _claim(self, now: datetime, woken: bool) -> tuple[list[Task], bool]:
        """Claim what fits; also say whether nothing could be claimed at all.

        Sync and async tasks are claimed separately, each sized to its own
        room (threads, the event loop). Right after an idle wait nothing
        runs, and one claim of every name serves both: the tasks that woke
        the worker cost one query, as in a worker without async tasks. An
        async claim that found nothing is not repeated for
        ASYNC_RECHECK_INTERVAL, so that a stream of sync tasks does not pay
        one more query per batch for async tasks that are not there.
        """
        sync_names, async_names = self._names()
        self._async_skipped = False
        paused = self.paused_queues()
        names, limit = sync_names, self.batch_size()
        if woken and async_names:  # nothing runs: the loop has all its room
            names, limit = list(self._kinds[0]), min(limit, self.async_concurrency)
        request = ClaimRequest(
            self.worker_id, limit, now, names, self.queues, self.backends, paused
        )
        batch = self.strategy.claim(request)
        if not async_names or woken:
            return batch, request.empty
        due = time.monotonic() >= self._async_recheck_at
        self._async_skipped = not due
        async_request = ClaimRequest(
            self.worker_id,
            self.async_batch_size() if due else 0,
            now,
            async_names,
            self.queues,
            (),
            paused,
        )
        claimed = self.strategy.claim(async_request)
        if not (claimed or async_request.empty):  # a claim looked, and found nothing
            self._async_recheck_at = time.monotonic() + ASYNC_RECHECK_INTERVAL
        return batch + claimed, request.empty and async_request.empty

    def paused_queues(self) -> tuple[str | None, ...]:
        """The paused queues, read at most once a second: a queue paused
        now gets no new claims from this worker a second from now."""
        if time.monotonic() - self._paused_read >= PAUSE_CHECK_INTERVAL:
            self._paused = paused_names(self.using)
            self._paused_read = time.monotonic()
        return self._paused

    def _step_through(self, runner: DBTaskRunner) -> int:
        """Claim and run one task through a project's runner, as 1.2.8's
        ``process_tasks`` did: its ``run_next_task`` (so its ``get_task_to_run``
        and ``run_task``), for each of this worker's queues in turn."""
        for queue in self.queues if self.queues is not None else [None]:
            if self.stopping.is_set():
                break
            if runner.run_next_task(self.registry, queue):
                self.claimed += 1
                self.processed += 1
                recycle_connections()
                return 1
        return 0

    def housekeeping(self, now: datetime) -> bool:
        """Recycle old connections; sweep, fire schedules and sample if due.

        True when due schedules queued tasks.
        """
        recycle_connections()
        if time.monotonic() - self._last_maintenance >= MAINTENANCE_INTERVAL:
            self.maintenance(now)
            self._last_maintenance = time.monotonic()
        fired = False
        if self.liveness is not None and time.monotonic() >= self._next_schedule_check:
            fired = self._fire_schedules(now) > 0
        if self.liveness is not None and (self._next_sample is None or now >= self._next_sample):
            self._sample_in_background(now)
        return fired

    def _fire_schedules(self, now: datetime) -> int:
        """Queue the runs of due schedules; note when the next one is due.

        Returns how many runs were queued.
        """
        self._next_schedule_check = time.monotonic() + SCHEDULE_CHECK_INTERVAL
        fired = 0
        if not self._schedules_synced:
            counts = scheduler.sync_declared(self.registry, self.using)
            self._schedules_synced = True
            if any(counts.values()):
                logger.info(
                    "Schedules synced: %s.", ", ".join(f"{n} {k}" for k, n in counts.items())
                )
        due = scheduler.next_due(self.registry, self.using)
        if due is not None and due <= now:
            fired = scheduler.fire_due(self.registry, now, self.using)
            due = scheduler.next_due(self.registry, self.using)
        self._schedule_due_in = None if due is None else max(0.0, (due - now).total_seconds())
        return fired

    def _sample_in_background(self, now: datetime) -> None:
        """Take this minute's queue sample on a thread of its own.

        Counting a queue of a million tasks takes seconds on some databases;
        the claim loop must not wait for it, nor the heartbeats.
        """
        if self._sampler is not None and self._sampler.is_alive():
            return  # the last one is still counting; try again next step
        self._next_sample = metrics.minute_of(now) + metrics.SAMPLE_INTERVAL
        self._sampler = self._in_background("bgtask-sample", self._take_sample, now)

    def _take_sample(self, now: datetime) -> None:
        try:
            metrics.take_sample(now, self.using)
        except DatabaseError as exc:
            logger.warning("Could not take the queue sample for the dashboard (%s).", exc)

    @staticmethod
    def _in_background(name: str, target: Callable[..., None], *args: Any) -> threading.Thread:
        """Run ``target`` on a daemon thread that closes its connections at the end."""

        def run() -> None:
            try:
                target(*args)
            finally:
                connections.close_all()  # this thread's own connections

        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        return thread

    def _flush_if_due(self) -> None:
        pending = self.executor.pending
        if (
            len(pending) >= FLUSH_EVERY_TASKS
            or (pending and (self.clock() - pending[0][2]).total_seconds() >= FLUSH_EVERY_SECONDS)
            or (
                self.executor.wakes
                and time.monotonic() - self.executor.wakes_since >= FLUSH_EVERY_SECONDS
            )
        ):
            self.executor.flush()

    def _execute_in_thread(self, task: Task, invocation: Invocation | None = None) -> Outcome:
        try:
            # A success waits for the worker's thread, which records those
            # of all threads together at its next step: one transaction for
            # many, instead of one per task from each thread (threads that
            # contend for the database's write lock on SQLite).
            return self.executor.execute(task, defer_success=True, invocation=invocation)
        finally:
            recycle_connections()
            self._thread_connections[threading.get_ident()] = list(
                connections.all(initialized_only=True)
            )

    # -- async tasks ---------------------------------------------------------

    def _invocation(self, task: Task) -> Invocation | None:
        """The invocation of a task that may be async (an async name, or a
        django.tasks row); None when it is sync or cannot be found (the run
        then records why)."""
        if not (self._kinds[2] or task.backend):
            return None
        try:
            return self.executor.invocations.for_task(task)
        except Exception:
            return None

    def _await(self, task: Task, invocation: Invocation) -> bool:
        """Begin an async task and hand its coroutine to the event loop.

        False when no slot of the supervisor's view is free for it (a
        django.tasks row claimed beyond the loop's room): it then runs on a
        thread, to completion, like a sync task.
        """
        slots = self.executor.slots
        if slots is not None and not self._async_slots:
            return False
        run = self.executor.begin(task, invocation=invocation)
        if isinstance(run, Outcome):
            return True  # a limit held it back; it did not start
        try:
            coroutine = self.executor.coroutine(run)
        except BaseException as exc:  # arguments that do not fit, say
            self.executor.conclude(run, error=exc)
            self.processed += 1
            return True
        if self._loop is None:
            self._loop = TaskLoop()
            if self._pool is None and self.liveness is not None:
                # From now on sync tasks run on a thread even when there is
                # one: run inline, a long one would keep this thread from
                # recording what the loop finished and from claiming for it.
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="bgtask")
        limit = self.executor.time_limit(task)
        if slots is not None:
            run.slot = self._async_slots.pop()
            # The loop cancels the coroutine at its limit; killing the process
            # is the last resort, for a loop that something blocks.
            deadline = None if limit is None else limit + ASYNC_KILL_GRACE
            slots.begin(task.pk, deadline, time.monotonic(), index=run.slot)
        current = self._currents[task.pk] = CurrentTask(
            task, self.using, in_loop=True, on_report=self.executor.report
        )
        future = self._loop.submit(
            task.pk,
            coroutine,
            timeout=limit,
            current=current,
            describe=lambda: f"{task.task_id} ({task.task_name})",
            enter=run.observed.enter if run.observed is not None else None,
        )
        self._coroutines[future] = run
        future.add_done_callback(partial(self._on_completed_coroutine, run.slot))
        return True

    def _record_ended(self, wait: float) -> None:
        """Wait up to ``wait`` seconds for a run to end, then record every run
        (thread or coroutine) that has."""
        self._completion.wait(wait)
        self._completion.clear()
        if self._running:
            self._reap({future for future in self._running if future.done()})
        self._reap_coroutines()

    def _on_completed(self, future: Future[Any]) -> None:
        self._completion.set()

    def _on_completed_coroutine(self, slot: int | None, future: Future[Any]) -> None:
        # On the loop's thread, as soon as the coroutine ended: its time
        # limit no longer applies, however long this thread takes to record it.
        if slot is not None and self.executor.slots is not None:
            self.executor.slots.lift_deadline(slot)
        self._completed.put(future)
        self._completion.set()

    def _reap_coroutines(self) -> None:
        """Record the outcomes of the coroutines that ended: failures at once,
        successes in one batch at the end of the step (all those that ended
        since the last one)."""
        while True:
            try:
                future = self._completed.get_nowait()
            except Empty:
                return
            run = self._coroutines.pop(future)
            self._currents.pop(run.task.pk, None)
            ended = future.result()
            try:
                self.executor.conclude(
                    run, value=ended.value, error=ended.error, defer_success=True
                )
            finally:
                if run.slot is not None:
                    self._async_slots.append(run.slot)
                self.processed += 1

    def _cancel_requested_coroutines(self) -> None:
        """Cancel the running coroutines of tasks someone cancelled (every second)."""
        if time.monotonic() - self._cancel_checked < ASYNC_CANCEL_CHECK_INTERVAL:
            return
        self._cancel_checked = time.monotonic()
        asked = [pk for pk, current in self._currents.items() if not current.cancel_requested]
        if not asked or self._loop is None:
            return
        cancelled = Task.objects.using(self.using).filter(pk__in=asked, cancel_requested=True)
        for pk in cancelled.values_list("pk", flat=True):
            self._currents[pk].note_cancel_requested()
            self._loop.cancel(pk, TaskCancelled("The task was cancelled while it ran."))

    def _close_thread_connections(self) -> None:
        """Close the connections the pool's threads opened; the threads have exited."""
        for opened in self._thread_connections.values():
            for connection in opened:
                connection.inc_thread_sharing()
                try:
                    connection.close()
                finally:
                    connection.dec_thread_sharing()
        self._thread_connections.clear()

    def _idle(self) -> None:
        if self._coroutines:
            # Woken by a run that ends, and every ASYNC_POLL_INTERVAL: to
            # claim new tasks while the loop has room, and to cancel the
            # coroutines of cancelled tasks.
            self._completion.wait(min(self.sleep, ASYNC_POLL_INTERVAL))
            self._completion.clear()
        elif self._running:
            done, _ = wait(list(self._running), timeout=self.sleep, return_when=FIRST_COMPLETED)
            self._reap(done)
        else:
            # Housekeeping now rather than after the wake-up, and a
            # recycled connection reopened (and its claim statements
            # prepared) now: a new connection and its first statements cost
            # milliseconds on a server database, which the tasks that wake
            # the worker would otherwise wait for.
            if self._guarded(self._before_waiting) != 0:
                return  # schedules queued tasks (claim them at once), or an outage
            logger.debug("waiting for tasks")
            wait_for = self.sleep
            if self._schedule_due_in is not None:  # wake up for the next schedule
                wait_for = min(wait_for, max(self._schedule_due_in, SCHEDULE_CHECK_INTERVAL))
                self._next_schedule_check = 0.0
            if self._task_due_in is not None:  # and for the next waiting task
                wait_for = min(wait_for, max(self._task_due_in, MIN_DUE_WAIT))
                self._task_due_in = None
            if self._paused:  # and to see a resumed queue's tasks
                wait_for = min(wait_for, PAUSE_CHECK_INTERVAL)
            self.strategy.wait(wait_for, self.stopping)
            self._woken = True

    def _before_waiting(self) -> int:
        """Housekeeping and a ready connection; 1 if schedules queued tasks."""
        if self.housekeeping(self.clock()):
            return 1
        self.strategy.warm()
        return 0

    def _reap(self, done: set[Future[Any]]) -> None:
        for future in done:
            task = self._running.pop(future)
            error = future.exception()
            if error is not None:
                self.processed += 1
                logger.error("Task %s: worker error", task.task_id, exc_info=error)
            elif future.result().result not in NOT_STARTED:
                self.processed += 1
                self._record_duration(future.result().duration)

    def _stop_coroutines(self) -> None:
        """Cancel the coroutines still running after the grace period, give them
        ASYNC_CANCEL_GRACE seconds to clean up, record them as interrupted
        (they run again), and close the loop."""
        assert self._loop is not None
        if self._coroutines:
            logger.warning(
                "Cancelling %d async task(s) still running at shutdown.", len(self._coroutines)
            )
            self._loop.cancel_all(WorkerStopped("The worker stopped before the task finished."))
            deadline = time.monotonic() + ASYNC_CANCEL_GRACE
            while self._coroutines and time.monotonic() < deadline:
                self._record_ended(0.1)
        for run in list(self._coroutines.values()):
            logger.warning(
                "Task %s did not end when cancelled; recording it as interrupted.",
                run.task.task_id,
            )
            self.executor.conclude(
                run, error=WorkerStopped("The worker stopped before the task finished.")
            )
        self._coroutines.clear()
        self._loop.close()

    def _release(self, batch: Sequence[Task]) -> None:
        for task in batch:
            try:
                if self.executor.release(task):
                    logger.info("Task %s put back in the queue unstarted.", task.task_id)
            except TRANSIENT_DB_ERRORS as exc:
                logger.error(
                    "Could not put task %s back (%s); its claim will expire.", task.task_id, exc
                )

    def _shutdown(self) -> None:
        if self._replaced is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)  # the grace period's timer
        self.strategy.close()
        if self._pool is None and self._loop is None:
            return
        # Tasks the pool has not started yet go straight back to the queue.
        for future, task in list(self._running.items()):
            if future.cancel():
                del self._running[future]
                self._release([task])
        deadline = time.monotonic() + self.shutdown_timeout
        while (
            (self._running or self._coroutines)
            and not self.force_stop
            and time.monotonic() < deadline
        ):
            self._record_ended(0.2)
        if self._loop is not None:
            self._stop_coroutines()
        self.executor.flush()  # the successes of the tasks that finished meanwhile
        if self._pool is None:
            return
        if self._running:
            for task in self._running.values():
                logger.warning(
                    "Task %s still running at shutdown; recording it as interrupted.", task.task_id
                )
                self.executor.persist(
                    lambda t=task: self.executor.record_failure(  # type: ignore[misc]
                        t, WorkerStopped("The worker stopped before the task finished.")
                    )
                )
            logging.shutdown()
            os._exit(0)  # the pool's threads cannot be joined; their claims are settled
        self._pool.shutdown(wait=True)
        self._close_thread_connections()

    # -- maintenance ---------------------------------------------------------

    def maintenance(self, now: datetime) -> None:
        """Put back claims of unregistered processes (1.2.8 workers, say) held
        longer than MAX_RUN_TIME, and fail tasks no worker knows.

        Tasks of registered workers that stopped heartbeating are recovered
        by the heartbeat thread, which can tell whether its own heartbeats
        flow (see :mod:`background_task.runtime.liveness`).
        """
        tasks = Task.objects.using(self.using)
        recover_orphans(self.executor, now, None)
        # Blocked tasks whose slots were freed by a run nobody woke them for
        # (its worker died before it could): at most MAINTENANCE_INTERVAL late.
        limits.sweep(self.using)
        scheduler.prune_fires(now, self.using)
        if self.liveness is None:  # run() prunes on a thread of its own (runtime.upkeep)
            prune_expired(now, self.using)
        if not self.registry.names():
            return  # a worker that knows no task cannot judge which names are unknown
        stale = now - timedelta(seconds=app_settings.MAX_RUN_TIME)
        unknown = (
            tasks.filter(status=status.WAITING, run_at__lt=stale, backend=None)
            .exclude(task_name__in=self.registry.names())
            .in_queues(self.queues)[:MAINTENANCE_BATCH]
        )
        for task in unknown:
            claimed = task.lock(self.worker_id)
            if claimed is None:
                continue
            error = TaskNotRegistered(
                f"No worker ran task {claimed.task_name!r} within MAX_RUN_TIME of its due time; "
                f"worker {self.worker_id} does not have it registered."
            )
            self.executor.persist(lambda t=claimed, e=error: self.executor.fail_permanently(t, e))  # type: ignore[misc]
