"""The options a task or a call takes, checked before anything is stored.

Pure: the column limits the models declare are defined here, so the
decorator, the enqueue paths and the django.tasks backend check a value
against the same numbers the schema uses, without loading models.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

TASK_NAME_MAX_LENGTH = 190  # characters, as in 1.2.8
QUEUE_MAX_LENGTH = 190  # characters
VERBOSE_NAME_MAX_LENGTH = 255  # characters
TASK_ID_MAX_LENGTH = 64  # characters, the django.tasks limit for result ids


def _check_length(label: str, value: Any, limit: int) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"{label} must be a string, not {type(value).__name__} {value!r}.")
    if len(value) > limit:
        raise ValueError(
            f"{label} {value[:40]!r}... is {len(value)} characters long; the limit is {limit}."
        )


def validate_options(
    *,
    name: str | None = None,
    queue: str | None = None,
    max_attempts: int | None = None,
    timeout: float | None = None,
    verbose_name: str | None = None,
    on_worker_lost: str | None = None,
    ttl: Any = None,
) -> None:
    """Raise TypeError or ValueError for a task option the database cannot hold."""
    _check_length("Task name", name, TASK_NAME_MAX_LENGTH)
    _check_length("Queue name", queue, QUEUE_MAX_LENGTH)
    _check_length("verbose_name", verbose_name, VERBOSE_NAME_MAX_LENGTH)
    if max_attempts is not None and (
        isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1
    ):
        raise ValueError(f"max_attempts must be a positive integer, not {max_attempts!r}.")
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}.")
    if ttl is not None and ttl_seconds(ttl) is None:
        raise ValueError(f"ttl must be a number of seconds >= 0 or a timedelta, not {ttl!r}.")
    if on_worker_lost is not None and on_worker_lost not in ("retry", "fail"):
        raise ValueError(
            f"on_worker_lost must be 'retry' (run it again) or 'fail' (never run it twice), "
            f"not {on_worker_lost!r}."
        )


def ttl_seconds(value: Any) -> int | None:
    """Whole seconds of a ``ttl`` (a number >= 0 or a timedelta); None if invalid."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return int(value)


def pick_ttl(ttl: Any, save_results: Any) -> Any:
    """``ttl`` (autotask) or ``save_results`` (rpqueue): one name for one option."""
    if ttl is not None and save_results is not None:
        raise TypeError("Give ttl or save_results (the same option), not both.")
    return ttl if ttl is not None else save_results
