"""What ``BACKGROUND_TASK_AUTOSTART`` asks for, read and checked.

Pure: the settings module (:mod:`background_task.core.conf`) validates the
setting with it, and the embedded worker
(:mod:`background_task.runtime.autostart`) starts what it describes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

OPTION_KEYS = {
    "workers",
    "threads",
    "async_concurrency",
    "queues",
    "sleep",
    "restart_delay",
    "log_file",
}


@dataclass(frozen=True)
class AutostartOptions:
    """What ``BACKGROUND_TASK_AUTOSTART`` asks for."""

    workers: int = 1
    threads: int = 1
    async_concurrency: int | None = None  # None: BACKGROUND_TASK_ASYNC_CONCURRENCY
    queues: tuple[str, ...] | None = None
    sleep: float = 1.0
    restart_delay: float = 5.0
    log_file: str | None = None

    def command_args(self) -> list[str]:
        """The ``process_tasks`` options that run this worker."""
        args = ["--workers", str(self.workers), "--threads", str(self.threads)]
        if self.async_concurrency is not None:
            args += ["--async-concurrency", str(self.async_concurrency)]
        args += ["--sleep", repr(self.sleep)]
        if self.queues:
            args += ["--queues", ",".join(self.queues)]
        if self.log_file:
            args += ["--log-file", self.log_file]
        return args


def parse_options(value: Any) -> AutostartOptions | None:
    """Read the setting: False/None (off), True (defaults) or a dict of options.

    Raises ValueError naming the bad part.
    """
    if value is None or value is False:
        return None
    if value is True:
        return AutostartOptions()
    if not isinstance(value, Mapping):
        raise ValueError("must be True, False or a dict of options")
    unknown = sorted(set(value) - OPTION_KEYS)
    if unknown:
        raise ValueError(
            f"has unknown option(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(sorted(OPTION_KEYS))}"
        )
    options: dict[str, Any] = {}
    for key in ("workers", "threads", "async_concurrency"):
        if key in value:
            number = value[key]
            if isinstance(number, bool) or not isinstance(number, int) or number < 1:
                raise ValueError(f"option {key!r} must be a positive integer, not {number!r}")
            options[key] = number
    for key in ("sleep", "restart_delay"):
        if key in value:
            number = value[key]
            if isinstance(number, bool) or not isinstance(number, int | float) or number < 0:
                raise ValueError(f"option {key!r} must be a number >= 0, not {number!r}")
            options[key] = float(number)
    if value.get("queues") is not None:
        queues = value["queues"]
        if isinstance(queues, str) or not isinstance(queues, Sequence):
            raise ValueError(f"option 'queues' must be a list of queue names, not {queues!r}")
        if not queues or not all(isinstance(q, str) and q and "," not in q for q in queues):
            raise ValueError(
                f"option 'queues' must be a non-empty list of queue names, not {queues!r}"
            )
        options["queues"] = tuple(queues)
    if value.get("log_file") is not None:
        if not isinstance(value["log_file"], str | os.PathLike):
            raise ValueError(f"option 'log_file' must be a path, not {value['log_file']!r}")
        options["log_file"] = os.fspath(value["log_file"])
    return AutostartOptions(**options)
