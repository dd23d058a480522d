"""When a task should run: 1.2.8's ``TaskSchedule`` and the value checks behind it.

Nothing here touches the database; times are computed from a ``now`` the
caller passes in, so tests step time instead of patching the clock.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, tzinfo
from typing import Any

from django.utils import timezone

RunAt = int | float | timedelta | datetime


def _check_run_at(value: Any) -> RunAt | None:
    if value is None or isinstance(value, timedelta | datetime):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f"schedule must be a number of seconds, a timedelta, a datetime, a dict or a "
            f"TaskSchedule, not {type(value).__name__} {value!r}."
        )
    if not math.isfinite(value):
        raise ValueError(f"schedule must be a finite number of seconds, not {value!r}.")
    return value


def _check_priority(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"priority must be an integer, not {type(value).__name__} {value!r}.")
    return value


def aware(value: datetime) -> datetime:
    """Return ``value`` with a time zone; a naive one is read in the current time zone.

    With ``USE_TZ = False`` datetimes stay naive, as Django stores them then.
    """
    from django.conf import settings

    if settings.USE_TZ and timezone.is_naive(value):
        return timezone.make_aware(value, timezone.get_current_timezone())
    if not settings.USE_TZ and timezone.is_aware(value):
        return timezone.make_naive(value)
    return value


def run_at_from(value: RunAt | None, now: datetime) -> datetime:
    """Turn seconds, a timedelta or a datetime into an absolute time after ``now``."""
    if value is None:
        return now
    if isinstance(value, datetime):
        return aware(value)
    if isinstance(value, timedelta):
        return now + value
    return now + timedelta(seconds=value)


class TaskSchedule:
    """When and how urgently to run a task, and what to do if it is already queued.

    ``action`` is one of :attr:`SCHEDULE` (always add a row),
    :attr:`RESCHEDULE_EXISTING` (move an existing waiting row with the same
    name and arguments instead) or :attr:`CHECK_EXISTING` (add nothing if one
    exists).
    """

    SCHEDULE = 0
    RESCHEDULE_EXISTING = 1
    CHECK_EXISTING = 2
    ACTIONS = (SCHEDULE, RESCHEDULE_EXISTING, CHECK_EXISTING)

    def __init__(
        self, run_at: RunAt | None = None, priority: int | None = None, action: int | None = None
    ) -> None:
        self._run_at = _check_run_at(run_at)
        self._priority = _check_priority(priority)
        if action is not None and action not in self.ACTIONS:
            raise ValueError(
                f"schedule action must be TaskSchedule.SCHEDULE (0), RESCHEDULE_EXISTING (1) "
                f"or CHECK_EXISTING (2), not {action!r}."
            )
        self._action = action

    @classmethod
    def create(cls, schedule: Any) -> TaskSchedule:
        """Build a schedule from any value ``schedule=`` accepts."""
        if isinstance(schedule, TaskSchedule):
            return schedule
        if schedule is None:
            return cls()
        if isinstance(schedule, dict):
            unknown = set(schedule) - {"run_at", "priority", "action"}
            if unknown:
                raise TypeError(
                    f"schedule dict has unknown keys {sorted(map(str, unknown))}; "
                    f"use run_at, priority and action."
                )
            return cls(schedule.get("run_at"), schedule.get("priority"), schedule.get("action"))
        return cls(run_at=_check_run_at(schedule))

    def merge(self, schedule: TaskSchedule) -> TaskSchedule:
        """Return a schedule with this one's values, falling back to ``schedule``'s."""
        params = {}
        for name in ("run_at", "priority", "action"):
            attr = f"_{name}"
            value = getattr(self, attr)
            params[name] = value if value is not None else getattr(schedule, attr)
        return TaskSchedule(**params)

    def run_at_after(self, now: datetime) -> datetime:
        """Resolve the run time against ``now`` (0 and None both mean now)."""
        return run_at_from(self._run_at or None, now)

    @property
    def run_at(self) -> datetime:
        return self.run_at_after(timezone.now())

    @property
    def immediate(self) -> bool:
        """Whether this schedule runs a task as soon as it is queued."""
        return not self._run_at

    @property
    def priority(self) -> int:
        return self._priority or 0

    @property
    def action(self) -> int:
        return self._action or self.SCHEDULE

    def __repr__(self) -> str:
        return f"TaskSchedule(run_at={self._run_at}, priority={self._priority})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TaskSchedule):
            return NotImplemented
        return (self._run_at, self._priority, self._action) == (
            other._run_at,
            other._priority,
            other._action,
        )

    __hash__ = None  # type: ignore[assignment]


def repeat_seconds(value: Any) -> int:
    """Normalise ``repeat=`` (seconds or a timedelta; None means never) to whole seconds."""
    if value is None:
        return 0
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f"repeat must be a number of seconds, a timedelta or a relativedelta, not "
            f"{type(value).__name__} "
            f"{value!r}."
        )
    if value < 0 or not math.isfinite(value):
        raise ValueError(f"repeat must be a number of seconds >= 0, not {value!r}.")
    return int(value)


RELATIVE_FIELDS = ("years", "months", "days", "hours", "minutes", "seconds")
MAX_REPEAT_STEPS = 100_000  # calendar steps examined to find the next repetition


def repeat_fields(value: Any) -> tuple[int, str | None]:
    """Normalise ``repeat=`` to the stored ``(repeat, repeat_rule)``.

    Seconds or a timedelta give whole seconds and no rule. A
    ``dateutil.relativedelta`` with relative fields only (``months=1``,
    ``years=1, days=-1``) gives a calendar rule, stored as JSON; ``repeat``
    then holds its length from 2000-01-01, so 1.2.8 code still sees a
    repeating task.
    """
    if value is None:  # the common case, checked per enqueue
        return 0, None
    from dateutil.relativedelta import relativedelta

    if not isinstance(value, relativedelta):
        return repeat_seconds(value), None
    absolute = [
        name
        for name in ("year", "month", "day", "weekday", "hour", "minute", "second", "microsecond")
        if getattr(value, name) is not None
    ]
    if absolute or value.leapdays or value.microseconds:
        raise ValueError(
            f"repeat={value!r}: only relative fields ({', '.join(RELATIVE_FIELDS)}) can repeat; "
            f"{', '.join(absolute) or 'leapdays/microseconds'} cannot."
        )
    rule = {name: getattr(value, name) for name in RELATIVE_FIELDS if getattr(value, name)}
    reference = datetime(2000, 1, 1)
    length = ((reference + value) - reference).total_seconds()
    if length <= 0:
        raise ValueError(f"repeat={value!r} must move forward in time.")
    return int(length), json.dumps(rule, sort_keys=True)


def next_calendar_repetition(
    scheduled: datetime, rule: str, now: datetime, until: datetime | None, zone: tzinfo
) -> datetime | None:
    """Like :func:`next_repetition` for a calendar rule: ``scheduled + k * rule``
    counted in wall-clock time of ``zone`` (so a monthly 09:00 stays 09:00
    across daylight saving, and the 31st becomes the last day of shorter
    months without drifting)."""
    from dateutil.relativedelta import relativedelta

    from background_task.core.recurrence import to_timeline, to_wall_clock

    step = relativedelta(**json.loads(rule))
    naive = timezone.is_naive(scheduled)
    local = scheduled if naive else to_wall_clock(scheduled, zone)
    for k in range(1, MAX_REPEAT_STEPS):
        shifted = local + step * k
        candidate = shifted if naive else to_timeline(shifted, zone)
        if candidate >= now:
            if until is not None and candidate > until:
                return None
            return candidate
    return None


def next_repetition(
    scheduled: datetime, every: int, now: datetime, until: datetime | None
) -> datetime | None:
    """Return the next run of a repeating task, keeping the phase of ``scheduled``.

    The next run is ``scheduled + k * every`` for the smallest k >= 1 that is
    not in the past, so missed slots are skipped rather than run in a burst.
    None when the task does not repeat or the next run falls after ``until``.
    """
    if every <= 0:
        return None
    step = timedelta(seconds=every)
    candidate = scheduled + step
    if candidate < now:
        missed = (now - candidate) // step
        candidate += step * missed
        if candidate < now:
            candidate += step
    if until is not None and candidate > until:
        return None
    return candidate
