"""The record a failed attempt leaves: one entry of a task's ``errors``."""

from __future__ import annotations

import traceback
from datetime import datetime
from typing import Any

MAX_ERROR_MESSAGE = 2000  # characters kept of an exception message


def exception_path(exc: BaseException) -> str:
    """The dotted path of the exception's class, as ``errors`` records it."""
    return f"{type(exc).__module__}.{type(exc).__qualname__}"


def format_traceback(exc: BaseException) -> str:
    """The exception with its traceback, as text (what ``last_error`` holds)."""
    return "".join(traceback.format_exception(exc))


def error_record(
    exc: BaseException, attempt: int, at: datetime, worker_id: str | None, trace: str
) -> dict[str, Any]:
    """One failed attempt: ``attempt``, ``at``, ``worker_id``,
    ``exception_class_path``, ``message`` and ``traceback``."""
    return {
        "attempt": attempt,
        "at": at.isoformat(),
        "worker_id": worker_id,
        "exception_class_path": exception_path(exc),
        "message": str(exc)[:MAX_ERROR_MESSAGE],
        "traceback": trace,
    }
