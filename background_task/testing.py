"""Eager mode for tests (``run_immediately``); see :mod:`background_task.api.eager`."""

from background_task.api.eager import (
    eager,
    run_immediately,
    run_in_process,
)

__all__ = [
    "eager",
    "run_immediately",
    "run_in_process",
]
