"""The embedded worker (``start()``); see :mod:`background_task.runtime.autostart`."""

from background_task.core.autostart_options import OPTION_KEYS, AutostartOptions, parse_options
from background_task.runtime.autostart import (
    EMBEDDED_ENV,
    LOCK_FD_ENV,
    PARENT_CHECK_INTERVAL,
    SERVER_MODULES,
    STOP_WAIT,
    EmbeddedWorker,
    lock_path,
    serving_process,
    start,
    start_if_serving,
)

__all__ = [
    "EMBEDDED_ENV",
    "LOCK_FD_ENV",
    "OPTION_KEYS",
    "PARENT_CHECK_INTERVAL",
    "SERVER_MODULES",
    "STOP_WAIT",
    "AutostartOptions",
    "EmbeddedWorker",
    "lock_path",
    "parse_options",
    "serving_process",
    "start",
    "start_if_serving",
]
