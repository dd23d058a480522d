"""When a failed task runs again: a small, pure policy object."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff of ``attempts ** exponent + base`` seconds after each failure.

    The defaults are 1.2.8's formula (``attempts ** 4 + 5``): 6 s after the
    first failure, 21 s after the second, 86 s after the third, and about 3.8
    days after the 24th. ``attempts`` counts the attempt that just failed.
    """

    base: float = 5.0  # seconds
    exponent: float = 4.0
    max_delay: float | None = None  # seconds; None: no cap

    def delay(self, attempts: int) -> timedelta:
        seconds = attempts**self.exponent + self.base
        if self.max_delay is not None:
            seconds = min(seconds, self.max_delay)
        return timedelta(seconds=seconds)

    def next_run(self, attempts: int, max_attempts: int, now: datetime) -> datetime | None:
        """Return when to try again, or None when the attempts are used up."""
        if attempts >= max_attempts:
            return None
        return now + self.delay(attempts)


DEFAULT_POLICY = RetryPolicy()
