"""What a running task reports about itself: progress and metadata.

Pure data and validation; the worker stores reports on the task's row
(``progress`` and ``meta`` columns) and the handle reads them back as
:class:`Progress` and a dict. Times are passed in, never read here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

MAX_MESSAGE = 1000  # characters of a progress message
MAX_META = 64_000  # characters of the JSON text of a task's metadata


@dataclass(frozen=True)
class Progress:
    """How far a task has got: ``done`` of ``total`` (when known), a message,
    and when it was reported."""

    done: float
    total: float | None = None
    message: str | None = None
    updated_at: datetime | None = None

    @property
    def percent(self) -> float | None:
        """``done`` as a percentage of ``total`` (one decimal), or None without a total."""
        if not self.total:
            return None
        return round(100.0 * self.done / self.total, 1)

    def as_json(self) -> dict[str, Any]:
        """The stored form: ``{"done", "total", "message", "updated_at"}``."""
        return {
            "done": self.done,
            "total": self.total,
            "message": self.message,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Progress:
        """Read the stored form back (an unreadable time becomes None)."""
        updated = data.get("updated_at")
        try:
            updated_at = datetime.fromisoformat(updated) if isinstance(updated, str) else None
        except ValueError:
            updated_at = None
        return cls(data.get("done", 0), data.get("total"), data.get("message"), updated_at)

    def describe(self) -> dict[str, Any]:
        """The JSON form shown by the status endpoint and ``task_status``."""
        return {**self.as_json(), "percent": self.percent}


def _number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def make_progress(done: Any, total: Any = None, message: Any = None, *, now: datetime) -> Progress:
    """A checked :class:`Progress`; ValueError or TypeError naming what is wrong."""
    if not _number(done):
        raise ValueError(f"set_progress(): done must be a finite number >= 0, not {done!r}.")
    if total is not None and not (_number(total) and total > 0):
        raise ValueError(
            f"set_progress(): total must be a finite number > 0, or None, not {total!r}."
        )
    if total is not None and done > total:
        raise ValueError(f"set_progress(): done ({done!r}) is more than total ({total!r}).")
    if message is not None and not isinstance(message, str):
        raise TypeError(
            f"set_progress(): message must be a string or None, not {type(message).__name__}."
        )
    if message is not None and len(message) > MAX_MESSAGE:
        raise ValueError(
            f"set_progress(): message is {len(message)} characters long; at most "
            f"{MAX_MESSAGE} are stored."
        )
    return Progress(done, total, message, now)


def merge_meta(current: Mapping[str, Any] | None, values: Mapping[str, Any]) -> dict[str, Any]:
    """``current`` updated with ``values``, checked to be JSON that fits a row.

    TypeError names the first key whose value JSON cannot hold; ValueError
    says when the whole is too large.
    """
    for key, value in values.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"update_meta(): the value of {key!r} is a {type(value).__name__}, which "
                f"JSON cannot store ({exc}); use str, int, float, bool, None, lists and dicts."
            ) from None
    merged = {**(current or {}), **values}
    size = len(json.dumps(merged))
    if size > MAX_META:
        raise ValueError(
            f"update_meta(): the task's metadata would be {size} characters of JSON; "
            f"at most {MAX_META} are stored. Keep large data elsewhere and store a reference."
        )
    return merged
