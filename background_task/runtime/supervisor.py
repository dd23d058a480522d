"""The supervisor behind ``process_tasks``: worker processes it can kill and replace.

``process_tasks`` always runs its workers as children of one supervisor
(``--workers N``, one by default). The supervisor

- forks the workers and passes SIGTERM/SIGINT on to them;
- kills a worker whose task overran its hard time limit (``timeout``),
  records a :class:`~background_task.core.exceptions.TaskTimeout` for that
  attempt and starts a replacement at once;
- when a worker dies (killed, crashed, out of memory), settles the tasks it
  held straight away: a task it was running counts a lost attempt (retried
  or failed, as the task chose), a task it had only claimed goes back to
  the queue untouched;
- restarts dead workers: at once if they had begun running tasks, with a
  growing delay while they keep dying young before their first task;
- registers itself in the worker table and heartbeats from its loop.

Each child shows what it runs through :class:`~background_task.runtime.slots.TaskSlots`.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from types import FrameType

from django.db import DatabaseError, connections

from background_task.api.registry import Tasks
from background_task.api.registry import tasks as default_registry
from background_task.core import status
from background_task.core.exceptions import ClaimLost, TaskTimeout, WorkerLost
from background_task.runtime.execution import TaskExecutor
from background_task.runtime.liveness import Liveness
from background_task.runtime.slots import RunningTask, TaskSlots
from background_task.runtime.stopping import STOP_SIGNALS, replace_handlers, restore_handlers
from background_task.store.ids import make_worker_id
from background_task.store.models import Task, WorkerProcess
from background_task.store.routing import queue_alias

logger = logging.getLogger("background_task.supervisor")

POLL_INTERVAL = 0.1  # seconds between checks on the children (and their time limits)
CANCEL_CHECK_INTERVAL = 1.0  # seconds between looks for tasks cancelled with force
QUICK_DEATH = 5.0  # seconds; a child dying sooner, before any task, is crash-looping
MAX_RESTART_DELAY = 30.0  # seconds


@dataclass(frozen=True)
class ChildContext:
    """What a worker process needs to know about its supervisor."""

    slots: TaskSlots
    supervisor_id: str
    parent_pid: int
    index: int = 0  # which of the supervisor's worker processes this is (0 to N-1)


@dataclass
class Child:
    """One worker process and what the supervisor knows of it."""

    process: BaseProcess
    slots: TaskSlots
    started: float  # monotonic seconds
    timed_out: RunningTask | None = None
    cancelled: RunningTask | None = None  # killed by cancel(force=True)
    signalled: int = 0  # stop signals passed on to it

    @property
    def killed_for_a_task(self) -> bool:
        """Killed by the supervisor because of one task (not the process's fault)."""
        return self.timed_out is not None or self.cancelled is not None


@dataclass
class DeadChild:
    """A child that died and whose tasks still have to be settled."""

    worker_id: str
    pid: int | None
    exit_code: int | None
    running: set[int] = field(default_factory=set)
    timed_out: RunningTask | None = None
    cancelled: RunningTask | None = None


class Supervisor:
    """Keeps ``count`` worker processes running ``target`` until told to stop."""

    def __init__(
        self,
        count: int,
        target: Callable[[ChildContext], None],
        *,
        threads: int = 1,
        async_concurrency: int = 0,
        shutdown_timeout: float,
        queues: Sequence[str | None] | None = None,
        registry: Tasks | None = None,
        using: str | None = None,
    ) -> None:
        using = queue_alias(using)
        self.count = count
        self.target = target
        self.threads = threads
        #: Slots each child gets for the async tasks on its event loop.
        self.async_concurrency = async_concurrency
        self.shutdown_timeout = shutdown_timeout
        self.registry = registry or default_registry
        self.using = using
        self.context = multiprocessing.get_context("fork")
        self.children: dict[int, Child] = {}
        self.delays: dict[int, float] = {}
        self.unsettled: list[DeadChild] = []
        self.stopping = False
        self.signals_received = 0
        self.last_signal: int = signal.SIGTERM
        self.supervisor_id = make_worker_id()
        self.liveness = Liveness(
            self.supervisor_id,
            kind=WorkerProcess.SUPERVISOR,
            queues=queues,
            concurrency=count * threads,
            using=using,
        )
        self._next_beat = 0.0
        self._next_cancel_check = 0.0

    # -- signals and children ------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        self.signals_received += 1
        self.last_signal = signum
        self._pass_on_signals()

    def _pass_on_signals(self) -> None:
        """Give every child as many stop signals as the supervisor received.

        Also called from the loop: a signal that arrives while a child is
        being forked finds it missing from ``children``, and it would
        otherwise never be told to stop.
        """
        for child in list(self.children.values()):
            while child.signalled < self.signals_received and child.process.pid:
                child.signalled += 1
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.process.pid, self.last_signal)

    def _start(self, slot: int) -> None:
        connections.close_all()  # never share a connection across fork()
        slots = TaskSlots(self.threads, self.async_concurrency)
        context = ChildContext(slots, self.supervisor_id, os.getpid(), slot)
        process = self.context.Process(
            target=self._child, args=(context,), name=f"bgtask-worker-{slot}"
        )
        # Forked with the stop signals blocked: one that arrives meanwhile stays
        # pending in the child until its worker has installed its handler (else
        # the handler the child inherited from this process would swallow it).
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        self.children[slot] = Child(process, slots, time.monotonic())
        logger.info("Started worker process %s (pid %s).", slot, process.pid)

    def _child(self, context: ChildContext) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        # Still blocked: the worker unblocks them once its handler is in place.
        self.target(context)

    def _enforce_cancellations(self) -> None:
        """Kill the process running a task cancelled with ``force=True``."""
        running = {
            task.pk: (slot, child, task)
            for slot, child in self.children.items()
            if child.process.pid and child.cancelled is None
            for task in child.slots.running()
        }
        if not running:
            return
        try:
            forced = list(
                Task.objects.using(self.using)
                .filter(pk__in=list(running), cancel_force=True)
                .values_list("pk", flat=True)
            )
        except DatabaseError as exc:
            logger.warning("Could not look for cancelled tasks (%s); will retry.", exc)
            with contextlib.suppress(DatabaseError):
                connections[self.using].close()
            return
        for pk in forced:
            slot, child, task = running[pk]
            if child.cancelled is not None or task not in child.slots.running():
                continue  # killed already, or the task finished meanwhile
            child.cancelled = task
            logger.warning(
                "Worker process %s (pid %s): task %s was cancelled with force; killing the "
                "process.",
                slot,
                child.process.pid,
                pk,
            )
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.process.pid, signal.SIGKILL)  # type: ignore[arg-type]

    def _enforce_time_limit(self, slot: int, child: Child, now: float) -> None:
        overdue = child.slots.overdue(now)
        if overdue is None or child.timed_out is not None or not child.process.pid:
            return
        if overdue not in child.slots.running():
            return  # it finished in the meantime
        child.timed_out = overdue
        logger.warning(
            "Worker process %s (pid %s): task %s overran its time limit by %.1f s; killing "
            "the process.",
            slot,
            child.process.pid,
            overdue.pk,
            now - overdue.deadline,
        )
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.process.pid, signal.SIGKILL)

    # -- the loop --------------------------------------------------------------

    def run(self) -> int:
        """Run until every child has exited and none is to be restarted."""
        replaced = None
        if threading.current_thread() is threading.main_thread():
            replaced = replace_handlers({signum: self._on_signal for signum in STOP_SIGNALS})
        try:
            return self._supervise()
        finally:
            if replaced is not None:
                restore_handlers(replaced)

    def _supervise(self) -> int:
        self._register()
        for slot in range(self.count):
            self._start(slot)
        restart_at: dict[int, float] = {}
        exit_code = 0
        while self.children or restart_at or self.unsettled:
            time.sleep(POLL_INTERVAL)
            now = time.monotonic()
            if self.stopping:
                self._pass_on_signals()
            for slot, child in list(self.children.items()):
                if child.process.is_alive():
                    self._enforce_time_limit(slot, child, now)
                    continue
                child.process.join()
                del self.children[slot]
                looping = self._crash_looping(child, now)  # before its slots are closed
                self._child_died(child)
                code = child.process.exitcode or 0
                if child.killed_for_a_task and not self.stopping:
                    restart_at[slot] = now  # a task's fault, not the process's
                    continue
                if code == 0 or self.stopping:
                    if code and not child.killed_for_a_task:
                        exit_code = code
                    continue
                delay = self.delays.get(slot, 0.0)
                delay = min(max(delay * 2, 1.0), MAX_RESTART_DELAY) if looping else 0.0
                self.delays[slot] = delay
                logger.warning(
                    "Worker process %s (pid %s) exited with %s; restarting in %.0fs.",
                    slot,
                    child.process.pid,
                    code,
                    delay,
                )
                restart_at[slot] = now + delay
            self._settle_dead_children()
            for slot, when in list(restart_at.items()):
                if self.stopping:
                    del restart_at[slot]
                elif now >= when:
                    del restart_at[slot]
                    self._start(slot)
            if now >= self._next_beat:
                self._heartbeat(now)
            if now >= self._next_cancel_check and not self.stopping:
                self._next_cancel_check = now + CANCEL_CHECK_INTERVAL
                self._enforce_cancellations()
        self._unregister()
        return exit_code

    @staticmethod
    def _crash_looping(child: Child, now: float) -> bool:
        """A child that died young without ever beginning a task is taken to
        be failing at start (a broken import, an unreachable database): its
        replacement waits, longer each time. One that ran tasks is replaced
        at once; a task that kills its process pays with its own attempts."""
        return now - child.started < QUICK_DEATH and not child.slots.begun()

    # -- the supervisor's own row ------------------------------------------------

    def _register(self) -> None:
        try:
            self.liveness.register()
        except DatabaseError as exc:
            logger.warning("Supervisor could not register (%s); will retry.", exc)
        self._next_beat = time.monotonic() + self.liveness.interval

    def _heartbeat(self, now: float) -> None:
        self._next_beat = now + self.liveness.interval
        self.liveness.tick()

    def _unregister(self) -> None:
        with contextlib.suppress(DatabaseError):
            self.liveness.unregister()
        connections.close_all()

    # -- settling what a dead child held -------------------------------------------

    def _child_died(self, child: Child) -> None:
        worker_id = child.slots.owner()
        if worker_id is None:
            return  # it died before it could claim anything
        self.unsettled.append(
            DeadChild(
                worker_id,
                child.process.pid,
                child.process.exitcode,
                {task.pk for task in child.slots.running()},
                child.timed_out,
                child.cancelled,
            )
        )
        child.slots.close()

    def _settle_dead_children(self) -> None:
        while self.unsettled:
            dead = self.unsettled[0]
            try:
                self.settle(dead)
            except DatabaseError as exc:
                logger.warning(
                    "Could not settle the tasks of worker %s yet (%s); retrying.",
                    dead.worker_id,
                    exc,
                )
                with contextlib.suppress(DatabaseError):
                    connections[self.using].close()
                return
            self.unsettled.pop(0)

    def settle(self, dead: DeadChild) -> None:
        """Record what became of each task a dead child held, then drop its row."""
        executor = TaskExecutor(self.registry, dead.worker_id, using=self.using)
        held = Task.objects.using(self.using).filter(
            status=status.RUNNING, locked_by=dead.worker_id
        )
        for task in held:
            token = task.claim_token  # recording a retry clears it on the object
            try:
                if dead.cancelled is not None and task.pk == dead.cancelled.pk:
                    executor.record_cancelled(
                        task,
                        f"Cancelled with force=True: the worker process running it "
                        f"(pid {dead.pid}) was killed.",
                    )
                elif dead.timed_out is not None and task.pk == dead.timed_out.pk:
                    limit = executor.time_limit(task)
                    described = f"its time limit of {limit:g}s" if limit else "its time limit"
                    logger.warning(
                        "Task %s (%s) ran longer than %s.", task.task_id, task.task_name, described
                    )
                    executor.record_failure(
                        task,
                        TaskTimeout(
                            f"Task {task.task_name} ran longer than {described}; "
                            f"the worker process running it (pid {dead.pid}) was killed."
                        ),
                    )
                elif task.pk in dead.running:
                    if dead.timed_out is not None:
                        cause = "was killed because another of its tasks overran its time limit"
                    elif dead.cancelled is not None:
                        cause = "was killed because another of its tasks was cancelled"
                    else:
                        cause = f"died (exit code {dead.exit_code})"
                    logger.warning(
                        "Task %s (%s): worker process %s %s while running it.",
                        task.task_id,
                        task.task_name,
                        dead.pid,
                        cause,
                    )
                    executor.record_lost(
                        task,
                        WorkerLost(
                            f"Worker {dead.worker_id} (pid {dead.pid}) {cause} while running "
                            f"this task."
                        ),
                    )
                elif executor.release(task):
                    logger.info(
                        "Task %s put back in the queue: its worker died before starting it.",
                        task.task_id,
                    )
            except ClaimLost:
                continue
            executor.free_slot(task, token)
        WorkerProcess.objects.using(self.using).filter(worker_id=dead.worker_id).delete()
