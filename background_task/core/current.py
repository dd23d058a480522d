"""Which task the running code belongs to: a context variable, set by the
worker around each run (:class:`~background_task.api.control.CurrentTask`).

Kept apart from the models so that code loaded before Django's apps are
ready (a ``LOGGING`` formatter, say) can ask it.
"""

from __future__ import annotations

import contextvars
from typing import Any

_current: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "background_task_current", default=None
)


def current_task() -> Any:
    """The running task's ``CurrentTask``, or None outside a task run by a worker."""
    return _current.get()


def set_current(value: Any) -> contextvars.Token[Any]:
    """Make ``value`` the current task of this context; returns the token to reset."""
    return _current.set(value)


def reset_current(token: contextvars.Token[Any]) -> None:
    """Undo a :func:`set_current`."""
    _current.reset(token)
