"""Self-fencing: a worker cut off from the database stops its tasks before
anyone else may take them over.

Other workers presume a worker lost once its ``heartbeat_at`` is older than
BACKGROUND_TASK_WORKER_LOST_AFTER by the database's clock, and run its
tasks again. A worker cut off from the database (a network partition, a
database it cannot reach while others can) cannot stop that; it can only
make sure its own runs are over by then. Each worker process notes, on its
monotonic clock, when it *sent* the last heartbeat that went through; that
heartbeat's ``heartbeat_at`` is the database's time at or after that
moment, so no one can presume the worker lost before
``sent + WORKER_LOST_AFTER``. Once ``sent + FENCE_AFTER`` passes without a
newer heartbeat going through, and the process has claimed tasks, a
watchdog thread (which never touches the database, so a hung connection
cannot hold it up) logs a warning and kills the process with SIGKILL: its
threads' and its event loop's tasks end with it, and nothing of its claims
is written. Its supervisor starts a new worker process, with a new worker
id, which claims again once the database answers. The tasks are recovered
as for any dead worker: by its supervisor once the database answers, or by
other workers after WORKER_LOST_AFTER, whichever comes first; the fenced
run is dead either way.

The margin (``WORKER_LOST_AFTER - FENCE_AFTER``) must cover the watchdog's
period (FENCE_CHECK_INTERVAL) and the kill; by default it is the larger of
one heartbeat interval and a fifth of WORKER_LOST_AFTER (6 s of the default
30), and the system checks refuse one under MIN_MARGIN.

SQLite needs none of this: its workers share one host, where a live worker
is never presumed lost.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable

logger = logging.getLogger("background_task.worker")

FENCE_CHECK_INTERVAL = 0.1  # seconds between the watchdog's looks at the clock
#: The smallest WORKER_LOST_AFTER - FENCE_AFTER the checks accept: two of the
#: watchdog's periods, and the kill.
MIN_MARGIN = 0.25


class SelfFence:
    """The deadline a worker process keeps with itself (see the module's docstring).

    ``holds`` says whether the process has claimed tasks (one that never
    claimed has nothing to stop); ``clock`` is monotonic seconds and
    ``kill`` ends the process, both injectable for tests.
    """

    def __init__(
        self,
        worker_id: str,
        fence_after: float,
        lost_after: float,
        holds: Callable[[], bool],
        *,
        clock: Callable[[], float] = time.monotonic,
        kill: Callable[[], None] | None = None,
    ) -> None:
        self.worker_id = worker_id
        self.fence_after = fence_after
        self.lost_after = lost_after
        self.holds = holds
        self.clock = clock
        self.kill = kill or _kill_self
        self._renewed = clock()  # the process's start: nothing held before it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def renewed(self, sent: float) -> None:
        """A heartbeat sent at ``sent`` (monotonic) went through."""
        self._renewed = max(self._renewed, sent)

    def overdue(self) -> float | None:
        """Seconds since the last renewal, when that is past the deadline and
        the process holds tasks; None otherwise."""
        silent = self.clock() - self._renewed
        if silent <= self.fence_after or not self.holds():
            return None
        return silent

    def check(self) -> bool:
        """Fence now if the deadline passed; True if it did."""
        silent = self.overdue()
        if silent is None:
            return False
        logger.warning(
            "Worker %s fenced itself: its heartbeat has not gone through for %.1fs "
            "(BACKGROUND_TASK_FENCE_AFTER %gs; other workers may presume it lost after "
            "%gs). Stopping its process and its running tasks now, so that no task runs "
            "twice at once; they are recovered as for a lost worker.",
            self.worker_id,
            silent,
            self.fence_after,
            self.lost_after,
        )
        for handler in logging.getLogger().handlers + logger.handlers:
            handler.flush()
        self.kill()
        return True

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"bgtask-fence-{self.worker_id}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    def _run(self) -> None:
        while not self._stop.wait(FENCE_CHECK_INTERVAL):
            if self.check():
                return


def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
