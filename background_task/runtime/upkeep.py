"""A running worker's upkeep of the queue's tables, on a thread of its own.

Two chores, each on its own cadence:

- pruning: expired history is deleted in small batches, taking at most
  half the thread's time, every PRUNE_AGAIN seconds while expired rows keep
  coming, else when the next row expires (IDLE_INTERVAL at most). In the
  claim loop a pass of thousands
  of rows paused claims for a few hundred milliseconds, and one pass per
  maintenance sweep fell behind a sustained few hundred tasks a second;
- vacuuming (PostgreSQL, see :mod:`background_task.store.vacuum`): a look
  at the tables' dead rows every VACUUM_CHECK_INTERVAL seconds while the
  worker finishes tasks, and for ACTIVE_FOR seconds after (an idle
  worker leaves no dead rows behind, and a fleet of idle workers should
  cost the database nothing).

The thread keeps its database connection between passes (a connection
per pass cost PostgreSQL a backend start every second) and stops with the
worker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime

from django.db import DatabaseError, connections

from background_task.runtime.connections import recycle_connections
from background_task.store.pruning import delete_in_batches, expired, next_expiry
from background_task.store.vacuum import Vacuum

logger = logging.getLogger("background_task.worker")

PRUNE_AGAIN = 1.0  # seconds between pruning passes while expired history keeps coming
PRUNE_PAUSE = 0.005  # seconds between two DELETE batches of one pass, at least
PRUNE_BATCH = 100  # rows per DELETE
IDLE_INTERVAL = 30.0  # seconds between pruning passes while nothing expires
VACUUM_CHECK_INTERVAL = 1.0  # seconds between looks at the tables' dead rows
# Seconds a worker counts as active after its last finished task (PostgreSQL
# counts a connection's dead rows up to 10 s after its last transaction).
ACTIVE_FOR = 15.0
ERROR_BACKOFF = 30.0  # seconds before a chore that failed is tried again


class Upkeep:
    """Prunes expired history and vacuums the queue's tables until stopped."""

    def __init__(
        self,
        using: str,
        clock: Callable[[], datetime],
        vacuum: Vacuum | None = None,
        finished: Callable[[], int] = lambda: 0,
    ) -> None:
        """``finished``: how many tasks the worker has finished so far."""
        self.using = using
        self.clock = clock
        self.vacuum = vacuum
        self.finished = finished
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="bgtask-upkeep", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop the thread; wait up to ``timeout`` seconds for its pass to end."""
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        next_prune = next_vacuum = time.monotonic()
        seen = -1  # tasks the worker had finished at the last pass
        active_at = next_vacuum  # monotonic; when that number last changed
        try:
            while not self.stopping.is_set():
                now = time.monotonic()
                try:
                    finished = self.finished()
                    if finished != seen:  # tasks ended since the last pass
                        seen, active_at = finished, now
                    active = now - active_at <= ACTIVE_FOR
                    if now >= next_prune:
                        next_prune = time.monotonic() + self._prune(active)
                    if self.vacuum is not None and now >= next_vacuum:
                        delay = self._vacuum(self.vacuum) if active else VACUUM_CHECK_INTERVAL
                        next_vacuum = time.monotonic() + delay
                except Exception:  # a bug must not end the upkeep for the worker's life
                    logger.exception("The worker's upkeep failed; trying again later.")
                    next_prune = next_vacuum = time.monotonic() + ERROR_BACKOFF
                wake = next_prune if self.vacuum is None else min(next_prune, next_vacuum)
                self.stopping.wait(max(0.0, wake - time.monotonic()))
                recycle_connections()
        finally:
            connections.close_all()  # this thread's own connections

    def _prune(self, active: bool = False) -> float:
        """One pruning pass; the seconds until the next one.

        ``active``: the worker finishes tasks, so expiring rows may appear
        any moment: with none known yet, look again in PRUNE_AGAIN seconds.
        Waiting IDLE_INTERVAL instead left a sustained load's first 30 s of
        rows to be deleted at once, and claims slowed down for seconds.
        """
        deleted = 0
        try:
            while not self.stopping.is_set():
                started = time.monotonic()
                count = delete_in_batches(
                    expired(self.clock(), self.using),
                    batch=PRUNE_BATCH,
                    max_batches=1,
                    skip_locked=True,  # the other workers' pruners take other rows
                )
                deleted += count
                if count < PRUNE_BATCH:
                    break
                # At most half the time deleting: claims and outcomes go in
                # between (SQLite's one write lock, InnoDB's row locks).
                self.stopping.wait(max(PRUNE_PAUSE, time.monotonic() - started))
            if deleted:
                return PRUNE_AGAIN
            # Come back when the first row expires: a pass IDLE_INTERVAL
            # later would find a sustained load's rows of that whole
            # interval at once, and deleting them would slow claims down.
            first = next_expiry(self.using)
        except DatabaseError as exc:
            logger.warning("Could not prune the expired history (%s); will retry.", exc)
            return ERROR_BACKOFF
        if first is None:
            return PRUNE_AGAIN if active else IDLE_INTERVAL
        due_in = (first - self.clock()).total_seconds()
        return min(IDLE_INTERVAL, max(PRUNE_AGAIN, due_in))

    def _vacuum(self, vacuum: Vacuum) -> float:
        """One look at the dead rows (and VACUUMs); the seconds until the next."""
        try:
            vacuumed = vacuum.run()
        except DatabaseError as exc:
            logger.warning("Could not VACUUM the queue's tables (%s); will retry.", exc)
            return ERROR_BACKOFF
        if vacuumed:
            logger.debug("Vacuumed %s.", ", ".join(vacuumed))
        return VACUUM_CHECK_INTERVAL
