"""When a failed task runs again: small, pure policy objects.

A task's retry policy comes from, first to last: the call's ``retry_delay``,
the decorator's, the ``BACKGROUND_TASK_RETRY_POLICY`` setting, and 1.2.8's
formula. :func:`make_policy` turns every accepted form into a policy:
seconds or a timedelta (always that delay), a callable of the attempt
number (returning seconds or a timedelta), a :class:`RetryPolicy`, or a dict
of its fields.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

POLICY_FIELDS = ("base", "exponent", "max_delay", "jitter")


class Policy(Protocol):
    """Anything that says how long to wait after a failed attempt."""

    def delay(self, attempts: int) -> timedelta:
        """The wait after the ``attempts``-th attempt failed."""

    def next_run(self, attempts: int, max_attempts: int, now: datetime) -> datetime | None:
        """When to try again, or None when the attempts are used up."""


class _Backoff:
    """What every policy shares: retry while attempts remain, after :meth:`delay`."""

    def delay(self, attempts: int) -> timedelta:
        raise NotImplementedError

    def next_run(self, attempts: int, max_attempts: int, now: datetime) -> datetime | None:
        """Return when to try again, or None when the attempts are used up."""
        if attempts >= max_attempts:
            return None
        return now + self.delay(attempts)


@dataclass(frozen=True)
class RetryPolicy(_Backoff):
    """Backoff of ``attempts ** exponent + base`` seconds after each failure.

    The defaults are 1.2.8's formula (``attempts ** 4 + 5``): 6 s after the
    first failure, 21 s after the second, 86 s after the third, and about 3.8
    days after the 24th. ``attempts`` counts the attempt that just failed.
    ``exponent=0`` waits ``base`` seconds every time. ``max_delay`` caps the
    wait; ``jitter`` (0 to 1) shortens each wait by a random fraction up to
    that much, so that tasks failing together do not all retry together.
    """

    base: float = 5.0  # seconds
    exponent: float = 4.0
    max_delay: float | None = None  # seconds; None: no cap
    jitter: float = 0.0  # fraction of the delay, 0 to 1

    def __post_init__(self) -> None:
        for name in ("base", "exponent"):
            value = getattr(self, name)
            if not _is_number(value) or value < 0:
                raise ValueError(f"RetryPolicy {name} must be a number >= 0, not {value!r}.")
        if self.max_delay is not None and (not _is_number(self.max_delay) or self.max_delay < 0):
            raise ValueError(
                f"RetryPolicy max_delay must be None or a number of seconds >= 0, "
                f"not {self.max_delay!r}."
            )
        if not _is_number(self.jitter) or not 0 <= self.jitter <= 1:
            raise ValueError(f"RetryPolicy jitter must be between 0 and 1, not {self.jitter!r}.")

    def delay(self, attempts: int, rand: Callable[[], float] = random.random) -> timedelta:
        """The wait after the ``attempts``-th failed attempt (``rand``: the
        source of jitter, for tests)."""
        growth = attempts**self.exponent if self.exponent else 0
        seconds = growth + self.base
        if self.max_delay is not None:
            seconds = min(seconds, self.max_delay)
        if self.jitter:
            seconds *= 1 - self.jitter * rand()
        return timedelta(seconds=seconds)

    def to_json(self) -> str:
        """The policy as stored with a task (a JSON object of its fields)."""
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class CallablePolicy(_Backoff):
    """A wait computed by a function of the attempt number (seconds or a timedelta)."""

    function: Callable[[int], Any]

    def delay(self, attempts: int) -> timedelta:
        value = self.function(attempts)
        seconds = _seconds(value)
        if seconds is None:
            raise ValueError(
                f"retry_delay {self.function!r} returned {value!r} for attempt {attempts}; "
                f"it must return a number of seconds >= 0 or a timedelta."
            )
        return timedelta(seconds=seconds)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _seconds(value: Any) -> float | None:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    return float(value) if _is_number(value) and value >= 0 else None


DEFAULT_POLICY = RetryPolicy()


def make_policy(value: Any, *, allow_callable: bool = True) -> Policy:
    """The policy a ``retry_delay`` value describes; TypeError or ValueError
    naming the problem for anything else."""
    if isinstance(value, RetryPolicy | CallablePolicy):
        return value
    seconds = _seconds(value)
    if seconds is not None:
        return RetryPolicy(base=seconds, exponent=0)
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(POLICY_FIELDS))
        if unknown:
            raise ValueError(
                f"retry_delay has unknown key(s) {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(POLICY_FIELDS)}."
            )
        return RetryPolicy(**value)
    if callable(value) and not isinstance(value, type):
        if not allow_callable:
            raise TypeError(
                "A callable retry_delay goes on the decorator (@background(retry_delay=...)); "
                "a call can only store seconds, a timedelta, a RetryPolicy or a dict of its fields."
            )
        return CallablePolicy(value)
    raise TypeError(
        f"retry_delay must be seconds >= 0, a timedelta, a callable of the attempt number, "
        f"a RetryPolicy or a dict of its fields ({', '.join(POLICY_FIELDS)}), "
        f"not {type(value).__name__} {value!r}."
    )


def stored_policy(value: Any) -> str:
    """The JSON text a call's ``retry_delay`` is stored as (never a callable)."""
    policy = make_policy(value, allow_callable=False)
    assert isinstance(policy, RetryPolicy)
    return policy.to_json()


def load_policy(text: str) -> RetryPolicy:
    """The policy stored with a task."""
    return RetryPolicy(**json.loads(text))


def exception_types(value: Any, name: str) -> tuple[type[BaseException], ...]:
    """``retry_on`` / ``dont_retry_on`` as a tuple of exception classes."""
    items = value if isinstance(value, tuple | list) else (value,)
    for item in items:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise TypeError(f"{name} must be an exception class or a tuple of them, not {item!r}.")
    return tuple(items)


def retries(
    exc: BaseException,
    retry_on: tuple[type[BaseException], ...] | None,
    dont_retry_on: tuple[type[BaseException], ...] | None,
) -> bool:
    """Whether a failure with ``exc`` may be retried under these filters."""
    if dont_retry_on and isinstance(exc, dont_retry_on):
        return False
    return not retry_on or isinstance(exc, retry_on)
