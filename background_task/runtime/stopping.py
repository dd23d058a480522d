"""How a worker stops: on a signal, on request, and at once on a second signal.

SIGTERM or SIGINT asks the worker to finish: no more claims, running tasks
get ``shutdown_timeout`` seconds, then are stopped. A second signal (not the
same Ctrl-C arriving twice, from the terminal and from the supervisor) stops
at once. :class:`SignalStops` holds this for :class:`~background_task.runtime.worker.Worker`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import Any

from background_task.runtime.execution import TaskExecutor, WorkerStopped

logger = logging.getLogger("background_task.worker")

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}  # ask a worker to finish and exit
# Seconds within which a repeated signal is one signal: Ctrl-C in a terminal
# reaches a worker directly and again as forwarded by its supervisor.
SAME_SIGNAL_WINDOW = 0.1


def replace_handlers(handlers: dict[int, Any]) -> dict[int, Any]:
    """Install ``handlers`` (signal number -> handler); return the ones they replaced."""
    previous = {signum: signal.getsignal(signum) for signum in handlers}
    for signum, handler in handlers.items():
        signal.signal(signum, handler)
    return previous


def restore_handlers(previous: dict[int, Any]) -> None:
    """Put back what :func:`replace_handlers` returned.

    A handler installed outside Python reads as ``None``; it comes back as the default.
    """
    for signum, handler in previous.items():
        signal.signal(signum, signal.SIG_DFL if handler is None else handler)


class SignalStops:
    """The stop requests of a worker: signal handlers and :meth:`stop`.

    Expects the worker's ``executor``, ``_pool`` and ``shutdown_timeout``.
    """

    executor: TaskExecutor
    _pool: ThreadPoolExecutor | None
    shutdown_timeout: float
    #: Set once the worker should stop claiming and finish.
    stopping: threading.Event
    #: Set when running tasks are to be stopped, not awaited.
    force_stop: bool = False
    _first_signal_at: float = float("-inf")  # monotonic seconds
    _signalled: bool = False  # a stop signal arrived (read before ``stopping`` is set)
    _stop_pipe: tuple[int, int] | None = None  # signal handler -> relay thread
    _replaced: dict[int, Any] | None = None  # the handlers ours replaced

    def install_signal_handlers(self) -> None:
        """Take SIGTERM, SIGINT (and SIGALRM, for the grace period) until
        :meth:`restore_signal_handlers`; main thread only."""
        self._stop_pipe = os.pipe()
        threading.Thread(
            target=self._relay_stop_requests, name="bgtask-signals", daemon=True
        ).start()
        self._replaced = replace_handlers(
            {
                signal.SIGTERM: self._on_signal,
                signal.SIGINT: self._on_signal,
                signal.SIGALRM: self._on_grace_expired,
            }
        )
        # A supervisor forks its workers with these signals blocked, so that a
        # stop signal sent during the fork waits for this handler.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if self._signalled:
            if now - self._first_signal_at < SAME_SIGNAL_WINDOW:
                return  # Ctrl-C reached us both from the terminal and via the supervisor
            logger.warning("Second signal %s: stopping now.", signal.Signals(signum).name)
            self._stop_now()
            return
        self._first_signal_at = now
        logger.info(
            "Signal %s: finishing running tasks (up to %ss), then stopping.",
            signal.Signals(signum).name,
            self.shutdown_timeout,
        )
        self._signalled = True
        self._request_stop()
        if self.executor.in_task_code and self.shutdown_timeout > 0:
            signal.setitimer(signal.ITIMER_REAL, self.shutdown_timeout)
        elif self.executor.in_task_code:
            self._stop_now()

    def _on_grace_expired(self, signum: int, frame: FrameType | None) -> None:
        logger.warning("Shutdown grace period over: stopping the running task.")
        self._stop_now()

    def _request_stop(self) -> None:
        """Set ``stopping`` on behalf of a signal handler, taking no lock.

        ``Event.set()`` takes the event's lock, which the main thread may
        hold at the very moment the signal arrives (inside
        ``stopping.wait()``); taking it in the handler would deadlock. The
        handler writes a byte to a pipe instead, and a helper thread sets it.
        """
        if self._stop_pipe is None:
            self.stopping.set()
            return
        with contextlib.suppress(OSError):
            os.write(self._stop_pipe[1], b"x")

    def _relay_stop_requests(self) -> None:
        assert self._stop_pipe is not None
        read_end = self._stop_pipe[0]
        try:
            while os.read(read_end, 64):  # b"": the write end closed, the worker stopped
                self.stopping.set()
        except OSError:
            pass
        finally:
            os.close(read_end)

    def restore_signal_handlers(self) -> None:
        """Cancel the grace timer and put back the handlers the worker replaced.

        A worker run in-process (``call_command("process_tasks", burst=True)``
        in a script) leaves the caller's Ctrl-C as it found it.
        """
        if self._replaced is None:
            return
        signal.setitimer(signal.ITIMER_REAL, 0)
        restore_handlers(self._replaced)
        self._replaced = None

    def _close_stop_pipe(self) -> None:
        if self._stop_pipe is not None:
            with contextlib.suppress(OSError):
                os.close(self._stop_pipe[1])

    def _stop_now(self) -> None:
        self._signalled = True
        self._request_stop()
        self.force_stop = True
        if self.executor.in_task_code and self._pool is None:
            raise WorkerStopped("The worker was stopped while this task ran.")

    def stop(self) -> None:
        """Ask the loop to stop after the running tasks (thread-safe)."""
        self.stopping.set()
