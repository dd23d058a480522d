"""Storing what running tasks report (progress and metadata) on their rows.

A task's ``set_progress()`` and ``update_meta()`` only change the task
object in memory and tell a :class:`ReportWriter`; the writer's thread
stores the latest value of each task that reported, the first at once and
then at most once every BACKGROUND_TASK_PROGRESS_INTERVAL seconds. A task
reporting in a tight loop therefore costs a few writes a second, never one
per call; an ``async def`` task never waits for the database; and a report
is not caught up in a transaction the task's own code has open. The last
report is stored with the task's outcome whatever the writer did
(:meth:`~background_task.runtime.execution.TaskExecutor.conclude`).

Each write is fenced by the run's claim, like every other write of a run: a
report that arrives after the run ended, or after another worker took the
task over, changes nothing. The thread starts with the first report and
ends (closing its connection) as soon as no run that reported is still
going, or after IDLE_EXIT seconds without a report, so workers whose tasks
report nothing have no thread and hold no extra connection.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from django.db import DatabaseError, connections

from background_task.api.control import CurrentTask
from background_task.core.conf import app_settings
from background_task.store.models import Task, TaskQuerySet

logger = logging.getLogger("background_task.worker")

IDLE_EXIT = 5.0  # seconds without a report after which the thread ends

#: The query that matches a run's row while its claim holds.
Claimed = Callable[[Task], TaskQuerySet]


class ReportWriter:
    """One thread per queue database that stores the runs' latest reports."""

    def __init__(self, using: str) -> None:
        self.using = using
        self._lock = threading.Lock()
        self._dirty: dict[int, tuple[CurrentTask, Claimed]] = {}
        self._active: set[int] = set()  # runs that reported and have not ended
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False  # a write failed; logged once until one goes through
        #: UPDATE statements sent so far (what the throttle bounds).
        self.writes = 0

    def note(self, current: CurrentTask, claimed: Claimed) -> None:
        """``current`` has a new report: store it soon (no I/O here)."""
        with self._lock:
            self._dirty[current.task.pk] = (current, claimed)
            self._active.add(current.task.pk)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"bgtask-reports-{self.using}", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def ended(self, pk: int) -> None:
        """The run of task ``pk`` ended: its outcome stored its last report,
        so nothing of it is left to write. The thread ends once no run that
        reported is still going."""
        with self._lock:
            if pk not in self._active:
                return
            self._active.discard(pk)
            self._dirty.pop(pk, None)
        self._wake.set()

    def flush(self) -> int:
        """Write the waiting reports now; returns how many rows were updated."""
        with self._lock:
            batch, self._dirty = self._dirty, {}
        return self._write(list(batch.values()))

    def _run(self) -> None:
        try:
            while True:
                self._wake.clear()  # before taking the batch: a later report sets it again
                flushed = time.monotonic()
                try:
                    self.flush()
                except Exception:  # never let one bad write end the thread
                    logger.exception("Could not store the reports of running tasks.")
                with self._lock:
                    if not self._active and not self._dirty:
                        self._thread = None  # every run that reported has ended
                        return
                if self._wake.wait(IDLE_EXIT):
                    # Throttle: a task that reports in a loop has its latest
                    # value stored once per interval.
                    next_write = flushed + app_settings.PROGRESS_INTERVAL
                    time.sleep(max(0.0, next_write - time.monotonic()))
                    continue
                with self._lock:
                    if not self._dirty:
                        self._active.clear()  # runs whose end went unreported
                        self._thread = None
                        return
        finally:
            connections.close_all()  # this thread's own connections

    def _write(self, batch: list[tuple[CurrentTask, Claimed]]) -> int:
        updated = 0
        for current, claimed in batch:
            task = current.task
            self.writes += 1
            try:
                updated += claimed(task).update(
                    progress_json=task.progress_json, meta_json=task.meta_json
                )
            except DatabaseError as exc:
                if not self._failing:
                    logger.warning(
                        "Could not store the progress of task %s (%s); its last report is "
                        "stored when it ends.",
                        task.task_id,
                        exc,
                    )
                    self._failing = True
                with contextlib.suppress(DatabaseError):
                    connections[self.using].close()
                return updated
        self._failing = False
        return updated


_writers: dict[str, ReportWriter] = {}
_writers_lock = threading.Lock()


def writer_for(using: str) -> ReportWriter:
    """The process's writer for the queue database ``using``."""
    with _writers_lock:
        found = _writers.get(using)
        if found is None:
            found = _writers[using] = ReportWriter(using)
        return found
