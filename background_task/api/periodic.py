"""Schedule definitions: what ``@periodic_task``, ``@cron_task`` and the
BACKGROUND_TASK_SCHEDULE setting declare.

A :class:`ScheduleDefinition` is a plain value, checked when it is made (at
decoration time, or by a system check for the setting), so a malformed
crontab or an unknown option fails early with a message naming the
schedule. :mod:`background_task.runtime.scheduler` stores and fires them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

from background_task.core.recurrence import (
    Cron,
    Interval,
    Recurrence,
    RecurrenceError,
    RRule,
    cron_from_fields,
    get_timezone,
)
from background_task.core.serialization import dumps_params

CATCH_UP_MODES = ("once", "skip", "all")
DEFAULT_CATCH_UP_LIMIT = 100  # fires queued at most by one catch-up with catch_up="all"


class ScheduleError(ValueError):
    """A schedule that cannot be used; the message names the schedule and the bad part."""


@dataclass(frozen=True)
class ScheduleDefinition:
    """One schedule as declared in code or settings."""

    name: str
    task_name: str
    kind: str  # "interval", "cron" or "rrule"
    expression: str  # seconds, a crontab, or an rrule
    timezone: str | None = None  # None: BACKGROUND_TASK_SCHEDULE_TIMEZONE
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int = 0
    catch_up: str = "once"
    catch_up_limit: int = DEFAULT_CATCH_UP_LIMIT
    overlap: bool = False
    start_now: bool = False
    source: str = "code"

    def recurrence(self, default_timezone: str | tzinfo = "UTC") -> Recurrence:
        """The rule that computes this schedule's fire times."""
        return make_recurrence(self.kind, self.expression, self.timezone or default_timezone)

    def params(self) -> str:
        """The stored JSON of the call's arguments."""
        return dumps_params(self.args, self.kwargs, self.task_name)

    def fingerprint(self, default_timezone: str) -> str:
        """A digest of everything that decides what and when it fires."""
        shape = [
            self.task_name,
            self.kind,
            self.expression,
            self.timezone or default_timezone,
            self.params(),
            self.queue,
            self.priority,
            self.catch_up,
            self.catch_up_limit,
            self.overlap,
        ]
        return hashlib.sha256(json.dumps(shape).encode()).hexdigest()


def make_recurrence(kind: str, expression: str, timezone: str | tzinfo) -> Recurrence:
    """Build the rule stored as ``kind`` and ``expression``."""
    zone = get_timezone(timezone)
    if kind == "interval":
        return Interval(float(expression))
    if kind == "cron":
        return Cron(expression, zone)
    if kind == "rrule":
        return RRule(expression, zone)
    raise RecurrenceError(f"unknown schedule kind {kind!r}")


def define(
    name: str,
    task_name: str,
    *,
    seconds: float | None = None,
    crontab: str | None = None,
    rrule: str | None = None,
    timezone: str | None = None,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    queue: str | None = None,
    priority: int = 0,
    catch_up: str = "once",
    catch_up_limit: int = DEFAULT_CATCH_UP_LIMIT,
    overlap: bool = False,
    start_now: bool = False,
    source: str = "code",
) -> ScheduleDefinition:
    """Check and build a definition; exactly one of seconds, crontab, rrule."""
    given = [
        label
        for label, value in (("seconds", seconds), ("crontab", crontab), ("rrule", rrule))
        if value is not None
    ]
    if len(given) != 1:
        raise ScheduleError(
            f"Schedule {name!r}: give exactly one of seconds, crontab or rrule "
            f"(got {', '.join(given) or 'none'})."
        )
    try:
        if seconds is not None:
            kind, expression = "interval", repr(float(Interval(seconds).seconds))
        elif crontab is not None:
            kind, expression = "cron", Cron(crontab, get_timezone("UTC")).expression
        else:
            kind, expression = "rrule", RRule(rrule or "", get_timezone("UTC")).rule
        if timezone is not None:
            get_timezone(timezone)
    except RecurrenceError as exc:
        raise ScheduleError(f"Schedule {name!r}: {exc}.") from None
    if catch_up not in CATCH_UP_MODES:
        raise ScheduleError(
            f"Schedule {name!r}: catch_up must be one of {', '.join(CATCH_UP_MODES)}, "
            f"not {catch_up!r}."
        )
    if (
        isinstance(catch_up_limit, bool)
        or not isinstance(catch_up_limit, int)
        or catch_up_limit < 1
    ):
        raise ScheduleError(
            f"Schedule {name!r}: catch_up_limit must be a positive integer, not {catch_up_limit!r}."
        )
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ScheduleError(f"Schedule {name!r}: priority must be an integer, not {priority!r}.")
    if args is not None and (isinstance(args, str | bytes) or not isinstance(args, Sequence)):
        raise ScheduleError(f"Schedule {name!r}: args must be a list, not {args!r}.")
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise ScheduleError(f"Schedule {name!r}: kwargs must be a dict, not {kwargs!r}.")
    definition = ScheduleDefinition(
        name=name,
        task_name=task_name,
        kind=kind,
        expression=expression,
        timezone=timezone,
        args=tuple(args or ()),
        kwargs=dict(kwargs or {}),
        queue=queue,
        priority=priority,
        catch_up=catch_up,
        catch_up_limit=catch_up_limit,
        overlap=bool(overlap),
        start_now=bool(start_now),
        source=source,
    )
    try:
        definition.params()
    except TypeError as exc:
        raise ScheduleError(f"Schedule {name!r}: {exc}") from None
    return definition


def crontab_of(
    crontab: str | None,
    minutes: Any = None,
    hours: Any = None,
    dow: Any = None,
    months: Any = None,
    dom: Any = None,
) -> str:
    """The crontab string of ``@cron_task``: the string if given, else the field form."""
    if crontab is not None:
        return crontab
    return cron_from_fields(minutes=minutes, hours=hours, dow=dow, months=months, dom=dom)


SETTING_KEYS = {
    "task",
    "cron",
    "crontab",
    "seconds",
    "rrule",
    "timezone",
    "args",
    "kwargs",
    "queue",
    "priority",
    "catch_up",
    "catch_up_limit",
    "overlap",
    "start_now",
}


def from_setting(value: Any) -> list[ScheduleDefinition]:
    """Read BACKGROUND_TASK_SCHEDULE: ``{name: crontab}`` (the name is the task)
    or ``{name: {"task": ..., "cron": ..., ...}}``. Raises ScheduleError."""
    if not isinstance(value, Mapping):
        raise ScheduleError(
            f"BACKGROUND_TASK_SCHEDULE must be a dict of schedules, not {type(value).__name__}."
        )
    definitions = []
    for name, entry in value.items():
        if not isinstance(name, str) or not name:
            raise ScheduleError(
                f"BACKGROUND_TASK_SCHEDULE: schedule names are strings, not {name!r}."
            )
        if isinstance(entry, str):
            definitions.append(define(name, name, crontab=entry, source="settings"))
            continue
        if not isinstance(entry, Mapping):
            raise ScheduleError(
                f"Schedule {name!r}: expected a crontab string or a dict, not {entry!r}."
            )
        unknown = set(entry) - SETTING_KEYS
        if unknown:
            raise ScheduleError(
                f"Schedule {name!r}: unknown option(s) {', '.join(sorted(map(str, unknown)))}; "
                f"known: {', '.join(sorted(SETTING_KEYS))}."
            )
        options = dict(entry)
        task_name = options.pop("task", name)
        if "cron" in options:
            options["crontab"] = options.pop("cron")
        if not isinstance(task_name, str):
            raise ScheduleError(
                f"Schedule {name!r}: task must be a dotted name, not {task_name!r}."
            )
        definitions.append(define(name, task_name, source="settings", **options))
    return definitions
