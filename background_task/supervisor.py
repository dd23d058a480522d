"""``process_tasks --workers N``: N worker processes under one supervisor.

The supervisor forks the workers, restarts one that dies (with a growing
delay if it keeps dying at once), and passes SIGTERM/SIGINT on to them.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from types import FrameType

from django.db import connections

logger = logging.getLogger("background_task.supervisor")

POLL_INTERVAL = 0.2  # seconds between checks on the children
QUICK_DEATH = 5.0  # seconds; a child dying sooner counts as crash-looping
MAX_RESTART_DELAY = 30.0  # seconds


class Supervisor:
    """Keeps ``count`` processes running ``target`` until told to stop."""

    def __init__(self, count: int, target: Callable[[], None], *, shutdown_timeout: float) -> None:
        self.count = count
        self.target = target
        self.shutdown_timeout = shutdown_timeout
        self.context = multiprocessing.get_context("fork")
        self.children: dict[int, tuple[BaseProcess, float]] = {}
        self.delays: dict[int, float] = {}
        self.stopping = False
        self.signals_received = 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        self.signals_received += 1
        for process, _ in self.children.values():
            if process.is_alive() and process.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signum)

    def _start(self, slot: int) -> None:
        connections.close_all()  # never share a connection across fork()
        process = self.context.Process(target=self._child, name=f"bgtask-worker-{slot}")
        process.start()
        self.children[slot] = (process, time.monotonic())
        logger.info("Started worker process %s (pid %s).", slot, process.pid)

    def _child(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_DFL)
        self.target()

    def run(self) -> int:
        """Run until every child has exited and none is to be restarted."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        for slot in range(self.count):
            self._start(slot)
        restart_at: dict[int, float] = {}
        exit_code = 0
        while self.children or restart_at:
            time.sleep(POLL_INTERVAL)
            now = time.monotonic()
            for slot, (process, started) in list(self.children.items()):
                if process.is_alive():
                    continue
                process.join()
                del self.children[slot]
                code = process.exitcode or 0
                if code == 0 or self.stopping:
                    if code:
                        exit_code = code
                    continue
                delay = self.delays.get(slot, 0.0)
                delay = (
                    min(max(delay * 2, 1.0), MAX_RESTART_DELAY)
                    if now - started < QUICK_DEATH
                    else 0.0
                )
                self.delays[slot] = delay
                logger.warning(
                    "Worker process %s (pid %s) exited with %s; restarting in %.0fs.",
                    slot,
                    process.pid,
                    code,
                    delay,
                )
                restart_at[slot] = now + delay
            for slot, when in list(restart_at.items()):
                if self.stopping:
                    del restart_at[slot]
                elif now >= when:
                    del restart_at[slot]
                    self._start(slot)
        return exit_code
