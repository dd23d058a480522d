"""Entry point of the worker that ``BACKGROUND_TASK_AUTOSTART`` starts.

``python -m background_task._embedded [process_tasks options]`` runs
``process_tasks`` with the server's settings, and stops it gracefully
(SIGTERM, as a supervisor expects) when the server process that started it
is gone. It keeps the inherited host lock open for as long as it runs.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from background_task.runtime.autostart import PARENT_CHECK_INTERVAL


def watch_parent(parent_pid: int, interval: float = PARENT_CHECK_INTERVAL) -> None:
    """Send ourselves SIGTERM once ``parent_pid`` is no longer our parent."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="background_task-parent-watch", daemon=True).start()


def main(argv: list[str]) -> None:
    from django.core.management import execute_from_command_line

    watch_parent(os.getppid())
    execute_from_command_line(["django-admin", "process_tasks", *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
