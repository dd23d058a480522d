"""Concurrency limits: how many tasks with one key may run at once. Pure.

The key is a string shared by every task that names it (the task's name by
default), so tasks of different names can share one budget; each run
honours its own row's limit against the runs that hold the key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from background_task.core.options import QUEUE_MAX_LENGTH

KEY_MAX_LENGTH = QUEUE_MAX_LENGTH  # characters, like a queue name

KeySource = str | Callable[..., Any] | None


class LimitSpec(NamedTuple):
    """A task's concurrency limit and where its key comes from (None: the task name)."""

    limit: int
    source: KeySource


def check_limit(value: Any) -> int:
    """``concurrency_limit`` checked: a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"concurrency_limit must be a positive integer, not {value!r}.")
    return value


def check_key(
    value: Any,
    *,
    per_call: bool,
    option: str = "concurrency_key",
    max_length: int | None = KEY_MAX_LENGTH,
) -> KeySource:
    """A key option (``concurrency_key``, ``rate_key``, ``unique_key``)
    checked: a string (on the decorator also a callable of the call's
    arguments), of at most ``max_length`` characters (None: any)."""
    if value is None:
        return None
    if isinstance(value, str):
        _check_text(value, option, max_length)
        return value
    if callable(value) and not per_call:
        function: Callable[..., Any] = value
        return function
    kinds = "a string" if per_call else "a string or a callable of the call's arguments"
    raise TypeError(f"{option} must be {kinds}, not {type(value).__name__} {value!r:.60}.")


def _check_text(key: str, option: str, max_length: int | None) -> None:
    if not key:
        raise ValueError(f"{option} must not be empty.")
    if max_length is not None and len(key) > max_length:
        raise ValueError(
            f"{option} {key[:40]!r}... is {len(key)} characters long; the limit is {max_length}."
        )


def key_text(
    task_name: str,
    source: KeySource,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    *,
    option: str = "concurrency_key",
    max_length: int | None = KEY_MAX_LENGTH,
) -> str:
    """The key of one call: ``source`` (a string, or a callable given the
    call's arguments), else the task's name."""
    if source is None:
        return task_name
    if isinstance(source, str):
        return source
    made = source(*args, **kwargs)
    if not isinstance(made, str):
        raise TypeError(
            f"The {option} callable of {task_name} must return a string, "
            f"not {type(made).__name__} {made!r:.60}."
        )
    _check_text(made, option, max_length)
    return made


def call_key(
    task_name: str, source: KeySource, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> str:
    """The concurrency key of one call (the task's name by default)."""
    return key_text(task_name, source, args, kwargs)
