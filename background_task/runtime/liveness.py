"""Worker rows, heartbeats, and the recovery of tasks whose worker was lost.

Every worker and supervisor process registers a :class:`WorkerProcess` row
and keeps its ``heartbeat_at`` fresh from a background thread, so a worker
busy in a long task still counts as alive. Times are the database's own
(``NOW()``), so clocks that differ between machines do not matter.

The same thread recovers *orphans*: running tasks held by a worker whose
heartbeat is older than BACKGROUND_TASK_WORKER_LOST_AFTER. Each recovery
counts an attempt, records a :class:`~background_task.core.exceptions.WorkerLost`
error and, as the task chose, queues it again with backoff or fails it.
Every write is fenced by the task's claim token, so two recovering workers,
or a lost worker that comes back, can never both settle the same attempt.

A worker only judges others lost after its own heartbeats have gone through
for a full WORKER_LOST_AFTER without a gap. After a database outage every
live worker's heartbeat is stale at once; this rule gives them all time to
heartbeat again before anyone is presumed dead.

A stale heartbeat is only a guess that a process is gone. When the silent
worker ran on the recovering worker's own host, the guess is checked: a
process with that pid that is still alive and still runs ``process_tasks``
keeps its tasks (its heartbeats are late, say SQLite's write lock starved
them, or a task held the GIL), for up to STALL_LIMIT times WORKER_LOST_AFTER.
Workers on other hosts can only be judged by their heartbeats.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from django.db import DatabaseError, connections
from django.db.models import Exists, OuterRef
from django.db.models.functions import Now

from background_task.core import status
from background_task.core.conf import app_settings, host_name
from background_task.core.exceptions import ClaimLost, WorkerLost
from background_task.core.version import __version__
from background_task.runtime.execution import TaskExecutor
from background_task.store.models import Task, WorkerProcess
from background_task.store.routing import queue_alias

logger = logging.getLogger("background_task.worker")

RECOVERY_BATCH = 100  # orphaned tasks settled per heartbeat, at most
STALL_LIMIT = 10  # a live same-host worker keeps its tasks this many WORKER_LOST_AFTER

_reported_stalls: set[str] = set()  # silent live workers already logged by this process


#: Command-line arguments that mark a worker process (see :func:`running_worker`).
WORKER_ARGUMENTS = frozenset({b"process_tasks", b"background_task._embedded"})


def running_worker(pid: int) -> bool:
    """True if ``pid`` is a live (not zombie) worker process on this host:
    ``process_tasks`` is one of its arguments, or it is the embedded worker
    (``-m background_task._embedded``) that BACKGROUND_TASK_AUTOSTART runs.

    Whole arguments are compared, so a program that merely mentions the
    name (``vim process_tasks.py``, a test run of ``test_process_tasks.py``)
    holding a reused pid is no worker. Reads ``/proc``; where there is none,
    answers False, so the worker is judged by its heartbeats alone.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rsplit(b")", 1)[1].split()[0]
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            command = cmdline.read()
    except (OSError, IndexError):
        return False
    arguments = set(command.split(b"\0"))
    return state not in (b"Z", b"X") and not arguments.isdisjoint(WORKER_ARGUMENTS)


def silent_but_running(using: str, worker_ids: set[str], lost_after: float) -> set[str]:
    """The workers among ``worker_ids`` that only look lost: they run on this
    host, their process is alive, and their heartbeat is not yet
    STALL_LIMIT times ``lost_after`` old."""
    rows = (
        WorkerProcess.objects.using(using)
        .filter(worker_id__in=worker_ids, host=host_name())
        .alive(STALL_LIMIT * lost_after)
        .values_list("worker_id", "pid")
    )
    running = {worker_id for worker_id, pid in rows if running_worker(pid)}
    for worker_id in running - _reported_stalls:
        logger.warning(
            "Worker %s has not heartbeated for more than %gs but its process is alive on "
            "this host; its tasks stay with it.",
            worker_id,
            lost_after,
        )
    _reported_stalls.update(running)
    return running


def recover_orphans(
    executor: TaskExecutor,
    now: datetime,
    lost_after: float | None,
    pulse: Callable[[], None] | None = None,
) -> int:
    """Settle running tasks whose worker is gone; remove lost workers' rows.

    Returns how many tasks this call recovered. A task another worker
    recovered first is skipped (its claim token no longer matches). With
    ``lost_after=None`` (a caller that does not heartbeat itself, so cannot
    tell a lost worker from its own lost connection) only claims of
    unregistered processes older than MAX_RUN_TIME are recovered.
    ``pulse`` is called before each task: the heartbeat thread beats from
    there when an interval has passed, so that a long recovery never
    silences the recovering worker (which would then fence itself).
    """
    using = executor.using
    orphans = list(Task.objects.using(using).orphaned(now, lost_after)[:RECOVERY_BATCH])
    known = set(
        WorkerProcess.objects.using(using)
        .filter(worker_id__in={task.locked_by for task in orphans})
        .values_list("worker_id", flat=True)
    )
    alive = silent_but_running(using, known, lost_after) if lost_after is not None else set()
    recovered = 0
    for task in orphans:
        if task.locked_by in alive:
            continue
        if pulse is not None:
            pulse()
        if task.locked_by in known:
            reason = (
                f"Worker {task.locked_by} was lost: no heartbeat for more than "
                f"{lost_after or 0:g}s while it held this task."
            )
        else:
            reason = (
                f"The claim by {task.locked_by} expired after MAX_RUN_TIME "
                f"({app_settings.MAX_RUN_TIME:g}s) and no live worker holds it."
            )
        logger.warning("Task %s (%s): %s", task.task_id, task.task_name, reason)
        token = task.claim_token
        try:
            executor.record_lost(task, WorkerLost(reason))
        except ClaimLost:
            continue  # settled by someone else in the meantime
        executor.free_slot(task, token)
        recovered += 1
    if lost_after is not None:
        # Lost workers that hold no running task any more.
        held = Task.objects.filter(status=status.RUNNING, locked_by=OuterRef("worker_id"))
        lost = WorkerProcess.objects.using(using).lost(lost_after).filter(~Exists(held))
        lost.exclude(worker_id__in=alive).delete()
    return recovered


class Liveness:
    """Registers one process and heartbeats for it from a daemon thread.

    ``recover`` makes the thread also recover orphaned tasks (workers do;
    a supervisor settles its own children's tasks instead).
    ``on_orphaned`` is called once if the process's parent (its
    supervisor) goes away; ``on_renewed`` with the monotonic time at which
    each heartbeat that went through was sent (for self-fencing).
    """

    def __init__(
        self,
        worker_id: str,
        *,
        kind: str = WorkerProcess.WORKER,
        queues: Sequence[str | None] | None = None,
        concurrency: int = 1,
        supervisor_id: str | None = None,
        using: str | None = None,
        executor: TaskExecutor | None = None,
        parent_pid: int | None = None,
        on_orphaned: Callable[[], None] | None = None,
        on_renewed: Callable[[float], None] | None = None,
    ) -> None:
        using = queue_alias(using)
        self.worker_id = worker_id
        self.kind = kind
        self.queues = list(queues) if queues is not None else None
        self.concurrency = concurrency
        self.supervisor_id = supervisor_id
        self.using = using
        self.executor = executor
        self.parent_pid = parent_pid
        self.on_orphaned = on_orphaned
        self.on_renewed = on_renewed
        self.interval = app_settings.HEARTBEAT_INTERVAL
        self.lost_after = app_settings.WORKER_LOST_AFTER
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._healthy_since: float | None = None  # monotonic start of the unbroken streak
        self._outage_logged = False
        self._last_sent = float("-inf")  # monotonic time of the last heartbeat that went through

    # -- the row ---------------------------------------------------------------

    def register(self) -> None:
        """Insert this process's row (replacing a stale one with the same id)."""
        sent = time.monotonic()
        rows = WorkerProcess.objects.using(self.using)
        rows.filter(worker_id=self.worker_id).delete()
        rows.create(
            worker_id=self.worker_id,
            kind=self.kind,
            host=host_name(),
            pid=os.getpid(),
            supervisor_id=self.supervisor_id,
            queues=self.queues,
            concurrency=self.concurrency,
            version=__version__,
            started_at=Now(),
            heartbeat_at=Now(),
        )
        self._healthy_since = time.monotonic()
        self._last_sent = sent
        if self.on_renewed is not None:
            self.on_renewed(sent)

    def beat(self) -> None:
        """Refresh ``heartbeat_at``; re-register if the row was removed meanwhile."""
        sent = time.monotonic()
        updated = (
            WorkerProcess.objects.using(self.using)
            .filter(worker_id=self.worker_id)
            .update(heartbeat_at=Now())
        )
        if not updated:
            logger.warning(
                "Worker %s had no row any more (presumed lost, its tasks recovered); "
                "registering again.",
                self.worker_id,
            )
            self.register()
            return
        if self._healthy_since is None:
            self._healthy_since = time.monotonic()
        self._last_sent = sent
        if self.on_renewed is not None:
            self.on_renewed(sent)

    def pulse(self) -> None:
        """Heartbeat now if an interval has passed since the last one went through."""
        if time.monotonic() - self._last_sent >= self.interval:
            self.beat()

    def unregister(self) -> None:
        """Delete this process's row (clean exit)."""
        WorkerProcess.objects.using(self.using).filter(worker_id=self.worker_id).delete()

    def healthy_for(self) -> float:
        """Seconds this process's heartbeats have gone through without a gap."""
        if self._healthy_since is None:
            return 0.0
        return time.monotonic() - self._healthy_since

    # -- the thread ------------------------------------------------------------

    def start(self) -> None:
        """Register (if the database is there) and start heartbeating."""
        try:
            self.register()
        except DatabaseError as exc:
            self._broken(exc)
        self._thread = threading.Thread(
            target=self._run, name=f"bgtask-heartbeat-{self.worker_id}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop heartbeating and remove the row."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(self.interval, 5.0))
        try:
            self.unregister()
        except DatabaseError as exc:
            logger.warning(
                "Could not remove the row of worker %s (%s); it will be cleaned up once its "
                "heartbeat is older than %gs.",
                self.worker_id,
                exc,
                self.lost_after,
            )

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                self.tick()
        finally:
            connections.close_all()  # this thread's own connections

    def tick(self) -> None:
        """One heartbeat, then the parent check and (when trusted) recovery."""
        try:
            self.beat()
        except DatabaseError as exc:
            self._broken(exc)
            return
        if self._outage_logged:
            logger.info("Worker %s: heartbeats go through again.", self.worker_id)
            self._outage_logged = False
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            logger.warning(
                "Worker %s: its supervisor (pid %s) is gone; stopping.",
                self.worker_id,
                self.parent_pid,
            )
            self.parent_pid = None
            if self.on_orphaned is not None:
                self.on_orphaned()
        if self.executor is not None and self.healthy_for() >= self.lost_after:
            try:
                recover_orphans(
                    self.executor, self.executor.clock(), self.lost_after, pulse=self.pulse
                )
            except DatabaseError as exc:
                self._broken(exc)

    def _broken(self, exc: DatabaseError) -> None:
        self._healthy_since = None
        if not self._outage_logged:
            logger.warning("Worker %s cannot heartbeat (%s); retrying.", self.worker_id, exc)
            self._outage_logged = True
        with contextlib.suppress(DatabaseError):
            connections[self.using].close()
