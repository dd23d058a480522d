"""Rate limits: at most N starts with one key in any window of a given
length. Pure: parsing ``"100/m"`` and the key of a call."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from background_task.core.limits import check_key, key_text

#: The units a rate may be given in, in seconds.
UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*$")
MAX_STARTS = 10_000  # per window: one row per start the window may hold


class Rate(NamedTuple):
    """``starts`` in any window of ``seconds``."""

    starts: int
    seconds: int

    def __str__(self) -> str:
        return f"{self.starts}/{self.seconds}s"


class RateSpec(NamedTuple):
    """A task's rate limit and where its key comes from (None: the task name)."""

    rate: Rate
    source: str | Callable[..., Any] | None


def parse_rate(value: Any) -> Rate:
    """``"100/m"``, ``"5/s"``, ``"1000/h"``, ``"10/30s"`` (10 per 30 seconds),
    or a stored ``Rate``; anything else raises ValueError naming it."""
    if isinstance(value, Rate):
        return value
    match = _RATE.match(value) if isinstance(value, str) else None
    if match is None or match.group(3) not in UNITS:
        raise ValueError(
            f"rate_limit must look like '100/m' (starts per s, m or h, or per '30s'), "
            f"not {value!r}."
        )
    starts, count, unit = int(match.group(1)), int(match.group(2) or 1), match.group(3)
    seconds = count * UNITS[unit]
    if not 1 <= starts <= MAX_STARTS or seconds < 1:
        raise ValueError(
            f"rate_limit {value!r} must allow 1 to {MAX_STARTS} starts per window of "
            f"at least a second."
        )
    return Rate(starts, seconds)


def stored(rate: Rate) -> str:
    """The column text of a rate (``"100/60"``)."""
    return f"{rate.starts}/{rate.seconds}"


def loaded(text: str) -> Rate:
    """The rate a column holds."""
    starts, seconds = text.split("/")
    return Rate(int(starts), int(seconds))


def rate_spec(rate_limit: Any, rate_key: Any) -> RateSpec | None:
    """A task's rate limit from ``rate_limit`` and ``rate_key``; None: none."""
    source = check_key(rate_key, per_call=False, option="rate_key")
    if rate_limit is None:
        if rate_key is not None:
            raise ValueError("rate_key needs rate_limit (how many starts per window).")
        return None
    return RateSpec(parse_rate(rate_limit), source)


def call_key(
    task_name: str,
    source: str | Callable[..., Any] | None,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
) -> str:
    """The rate key of one call (the task's name by default)."""
    return key_text(task_name, source, args, kwargs, option="rate_key")
