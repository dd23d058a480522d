"""When a schedule fires: fixed intervals, crontab expressions and rrules.

Pure date arithmetic: nothing here reads settings or the database, and every
method takes the moment to count from, so tests step through time (daylight
saving changes included) without patching any clock.

Cron and rrule times are wall-clock times in the schedule's time zone. They
are stepped through as naive local times and only then placed on the
timeline, which gives the two daylight-saving rules:

- a wall-clock time that occurs twice (the clocks go back) fires once, at
  its first occurrence;
- a wall-clock time that does not exist (the clocks go forward) fires at the
  first valid moment after it: ``30 2 * * *`` fires at 03:00 on that day.

Intervals are absolute (so many seconds apart on the timeline) and ignore
time zones.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from dateutil.rrule import rrule, rruleset, rrulestr

MAX_LOOKAHEAD = 5000  # matches examined before a cron or rrule is declared to never fire

CRON_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

# The field form's ranges; dow counts from 0 = Monday there (autotask's convention).
FIELD_RANGES = {
    "minutes": (0, 59),
    "hours": (0, 23),
    "dom": (1, 31),
    "months": (1, 12),
    "dow": (0, 6),
}


class RecurrenceError(ValueError):
    """A schedule expression that cannot be used; the message names the bad part."""


def get_timezone(name: str | tzinfo) -> tzinfo:
    """A time zone from its IANA name (or a tzinfo, returned as it is)."""
    if isinstance(name, tzinfo):
        return name
    if not isinstance(name, str) or not name:
        raise RecurrenceError(
            f"time zone must be an IANA name such as 'Europe/Berlin', not {name!r}"
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise RecurrenceError(f"unknown time zone {name!r}") from None


def to_timeline(local: datetime, zone: tzinfo) -> datetime:
    """Place a naive wall-clock time of ``zone`` on the timeline (an aware UTC time).

    An ambiguous time takes its first occurrence; a time in a gap moves to the
    first valid minute after it (the moment the clocks jumped).
    """
    candidate = local
    for _ in range(24 * 60):  # no gap is longer than a day
        aware = candidate.replace(tzinfo=zone, fold=0)
        if aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == candidate:
            return aware.astimezone(UTC)
        candidate = (candidate + timedelta(minutes=1)).replace(second=0, microsecond=0)
    raise RecurrenceError(f"{local} has no valid time in {zone} within a day")  # pragma: no cover


def to_wall_clock(moment: datetime, zone: tzinfo) -> datetime:
    """The naive wall-clock time of ``zone`` at the aware ``moment``."""
    return moment.astimezone(zone).replace(tzinfo=None)


class Recurrence:
    """A rule for fire times. Subclasses answer ``next_after``."""

    kind = ""

    def next_after(self, moment: datetime, anchor: datetime) -> datetime | None:
        """The first fire time strictly after the aware ``moment``, or None if
        there is none. ``anchor`` is where the schedule's grid starts (its
        first sync); only intervals and rrules use it."""
        raise NotImplementedError

    def describe(self) -> str:
        """The expression as the admin and ``list_schedules`` show it."""
        raise NotImplementedError

    def latest_at_or_before(self, moment: datetime, anchor: datetime) -> datetime | None:
        """The last fire time at or before ``moment``, or None if there is none."""
        raise NotImplementedError

    def due_between(
        self, start: datetime, end: datetime, anchor: datetime, limit: int
    ) -> list[datetime]:
        """Fire times in ``[start, end]``, at most ``limit`` of them (the latest).

        Steps only through the last ``limit`` fires: however long no worker
        ran, catching up costs at most ``limit`` steps.
        """
        latest = self.latest_at_or_before(end, anchor)
        if latest is None or latest < start:
            return []
        times = [latest]
        while len(times) < limit:
            earlier = self.latest_at_or_before(times[0] - timedelta(microseconds=1), anchor)
            if earlier is None or earlier < start:
                break
            times.insert(0, earlier)
        return times


class WallClockRule(Recurrence):
    """A rule whose times are wall-clock times of ``timezone`` (cron, rrule).

    Subclasses name the wall time after or before a naive local time; this
    class places them on the timeline with the daylight-saving rules of the
    module docstring.
    """

    timezone: tzinfo

    def _wall_after(self, local: datetime, anchor: datetime) -> datetime | None:
        raise NotImplementedError

    def _wall_before(self, local: datetime, anchor: datetime) -> datetime | None:
        raise NotImplementedError

    def _search_after(self, moment: datetime) -> datetime:
        """The naive local time to look forward from."""
        return to_wall_clock(moment, self.timezone)

    def _search_before(self, moment: datetime) -> datetime:
        """A naive local time late enough that looking back from it misses no
        fire at or before ``moment``."""
        return to_wall_clock(moment, self.timezone) + timedelta(hours=3)  # past any DST shift

    def next_after(self, moment: datetime, anchor: datetime) -> datetime | None:
        local = self._search_after(moment)
        for _ in range(MAX_LOOKAHEAD):
            found = self._wall_after(local, anchor)
            if found is None:
                return None
            fire = to_timeline(found, self.timezone)
            if fire > moment:
                return fire
            local = found  # an ambiguous hour: this wall time already fired
        return None  # pragma: no cover

    def latest_at_or_before(self, moment: datetime, anchor: datetime) -> datetime | None:
        local = self._search_before(moment)
        for _ in range(MAX_LOOKAHEAD):
            found = self._wall_before(local, anchor)
            if found is None:
                return None
            fire = to_timeline(found, self.timezone)
            # Only a time next_after would fire counts (not a repeated wall time).
            if fire <= moment and self.next_after(fire - timedelta(microseconds=1), anchor) == fire:
                return fire
            local = found
        return None  # pragma: no cover


@dataclass(frozen=True)
class Interval(Recurrence):
    """Every ``seconds`` seconds on the timeline, counted from the anchor."""

    seconds: float
    kind = "interval"

    def __post_init__(self) -> None:
        if (
            isinstance(self.seconds, bool)
            or not isinstance(self.seconds, int | float)
            or not self.seconds > 0
            or self.seconds == float("inf")
        ):
            raise RecurrenceError(f"seconds must be a positive number, not {self.seconds!r}")

    def next_after(self, moment: datetime, anchor: datetime) -> datetime | None:
        # In UTC: adding to a time of a zone with daylight saving adds wall-clock time.
        moment, anchor = moment.astimezone(UTC), anchor.astimezone(UTC)
        if moment < anchor:
            return anchor
        periods = int((moment - anchor).total_seconds() // self.seconds) + 1
        candidate = anchor + timedelta(seconds=periods * self.seconds)
        while candidate <= moment:  # float rounding
            periods += 1
            candidate = anchor + timedelta(seconds=periods * self.seconds)
        return candidate

    def latest_at_or_before(self, moment: datetime, anchor: datetime) -> datetime | None:
        moment, anchor = moment.astimezone(UTC), anchor.astimezone(UTC)
        if moment < anchor:
            return None
        periods = int((moment - anchor).total_seconds() // self.seconds)
        candidate = anchor + timedelta(seconds=periods * self.seconds)
        while candidate > moment:  # float rounding
            periods -= 1
            candidate = anchor + timedelta(seconds=periods * self.seconds)
        return candidate

    def describe(self) -> str:
        return f"every {self.seconds:g}s"


@dataclass(frozen=True)
class Cron(WallClockRule):
    """A five-field crontab expression (or an ``@daily``-style alias) in ``timezone``.

    When both day of month and day of week are restricted, a day matching
    either fires, as in cron.
    """

    expression: str
    timezone: tzinfo
    kind = "cron"

    def __post_init__(self) -> None:
        if not isinstance(self.expression, str):
            raise RecurrenceError(
                f"a crontab must be a string, not {type(self.expression).__name__} "
                f"{self.expression!r}"
            )
        normalized = " ".join(self.expression.split()).lower()
        expanded = CRON_ALIASES.get(normalized, normalized)
        if normalized.startswith("@") and normalized not in CRON_ALIASES:
            raise RecurrenceError(
                f"unknown crontab alias {self.expression!r}; "
                f"known: {', '.join(sorted(CRON_ALIASES))}"
            )
        fields = expanded.split()
        if len(fields) != 5:
            raise RecurrenceError(
                f"crontab {self.expression!r} has {len(fields)} field(s); five are needed: "
                f"minute hour day-of-month month day-of-week"
            )
        for label, field in zip(
            ("minute", "hour", "day-of-month", "month", "day-of-week"), fields, strict=True
        ):
            probe = ["*"] * 5
            probe[["minute", "hour", "day-of-month", "month", "day-of-week"].index(label)] = field
            try:
                croniter(" ".join(probe))
            except (ValueError, KeyError) as exc:
                raise RecurrenceError(
                    f"crontab {self.expression!r}: bad {label} field {field!r} ({exc})"
                ) from None
        try:
            croniter(expanded)
        except (ValueError, KeyError) as exc:
            raise RecurrenceError(f"crontab {self.expression!r}: {exc}") from None
        object.__setattr__(self, "expression", expanded)
        if self._first_after(datetime(2000, 1, 1)) is None:
            raise RecurrenceError(f"crontab {self.expression!r} never fires")

    def _first_after(self, local: datetime) -> datetime | None:
        try:
            found = croniter(self.expression, local, day_or=True).get_next(datetime)
        except (ValueError, KeyError):  # no date within croniter's search window
            return None
        return found  # type: ignore[no-any-return]

    def _wall_after(self, local: datetime, anchor: datetime) -> datetime | None:
        return self._first_after(local)

    def _wall_before(self, local: datetime, anchor: datetime) -> datetime | None:
        try:
            found = croniter(self.expression, local, day_or=True).get_prev(datetime)
        except (ValueError, KeyError):
            return None
        return found  # type: ignore[no-any-return]

    def _search_after(self, moment: datetime) -> datetime:
        return to_wall_clock(moment, self.timezone).replace(second=0, microsecond=0)

    def _search_before(self, moment: datetime) -> datetime:
        # A minute past the wall time, so a fire exactly at ``moment`` counts.
        return self._search_after(moment) + timedelta(minutes=1)

    def describe(self) -> str:
        return self.expression


def cron_from_fields(
    minutes: int | Sequence[int] | None = None,
    hours: int | Sequence[int] | None = None,
    dow: int | Sequence[int] | None = None,
    months: int | Sequence[int] | None = None,
    dom: int | Sequence[int] | None = None,
) -> str:
    """Build a crontab string from autotask's field form.

    Each field is None (every value), an integer or a list of integers;
    ``dow`` counts from 0 = Monday. ``minutes`` defaults to 0 when any
    coarser field is given, else to every minute.
    """
    given = {"minutes": minutes, "hours": hours, "dom": dom, "months": months, "dow": dow}

    def render(label: str, value: int | Sequence[int] | None) -> str:
        if value is None:
            return "*"
        values: Iterable[object] = [value] if isinstance(value, int) else value
        numbers: list[int] = []
        for item in values:
            if isinstance(item, bool) or not isinstance(item, int):
                raise RecurrenceError(f"{label} must hold integers, not {item!r}")
            low, high = FIELD_RANGES[label]
            if not low <= item <= high:
                raise RecurrenceError(f"{label} value {item} is out of range {low}-{high}")
            numbers.append((item + 1) % 7 if label == "dow" else item)  # cron: 0 = Sunday
        if not numbers:
            raise RecurrenceError(f"{label} is an empty list; use None for every value")
        return ",".join(str(number) for number in sorted(set(numbers)))

    if minutes is None and any(value is not None for value in given.values()):
        given["minutes"] = 0
    return " ".join(
        render(label, given[label]) for label in ("minutes", "hours", "dom", "months", "dow")
    )


_RRULE_PARTS = {
    "FREQ",
    "INTERVAL",
    "COUNT",
    "UNTIL",
    "BYMONTH",
    "BYMONTHDAY",
    "BYYEARDAY",
    "BYWEEKNO",
    "BYDAY",
    "BYWEEKDAY",
    "BYHOUR",
    "BYMINUTE",
    "BYSECOND",
    "BYSETPOS",
    "BYEASTER",
    "WKST",
}


@dataclass(frozen=True)
class RRule(WallClockRule):
    """An RFC 5545 recurrence rule (``FREQ=MONTHLY;BYMONTHDAY=-1;BYHOUR=23``), read
    with python-dateutil, in ``timezone``.

    The rule starts at midnight (local) of the anchor's day, so BYHOUR alone
    fires on the hour; give BYMINUTE for other minutes.
    """

    rule: str
    timezone: tzinfo
    kind = "rrule"

    def __post_init__(self) -> None:
        if not isinstance(self.rule, str) or not self.rule.strip():
            raise RecurrenceError(f"an rrule must be a non-empty string, not {self.rule!r}")
        text = re.sub(r"^RRULE:", "", self.rule.strip(), flags=re.IGNORECASE)
        for part in text.split(";"):
            key, _, value = part.partition("=")
            if key.strip().upper() not in _RRULE_PARTS or not value:
                raise RecurrenceError(f"rrule {self.rule!r}: unknown or empty part {part!r}")
        object.__setattr__(self, "rule", text.upper())
        try:
            self._rule(datetime(2000, 1, 1))
        except (ValueError, TypeError) as exc:
            raise RecurrenceError(f"rrule {self.rule!r}: {exc}") from None

    def _rule(self, start: datetime) -> rrule | rruleset:
        return rrulestr(self.rule, dtstart=start.replace(hour=0, minute=0, second=0, microsecond=0))

    def _wall_after(self, local: datetime, anchor: datetime) -> datetime | None:
        found: datetime | None = self._rule(to_wall_clock(anchor, self.timezone)).after(
            local, inc=False
        )
        return found

    def _wall_before(self, local: datetime, anchor: datetime) -> datetime | None:
        found: datetime | None = self._rule(to_wall_clock(anchor, self.timezone)).before(
            local, inc=False
        )
        return found

    def describe(self) -> str:
        return f"RRULE:{self.rule}"
