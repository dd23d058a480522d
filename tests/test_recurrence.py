"""Schedule maths: intervals, crontabs and rrules, daylight saving included (no database)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from background_task.core.recurrence import (
    Cron,
    Interval,
    RecurrenceError,
    RRule,
    cron_from_fields,
    get_timezone,
    to_timeline,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)


def local(zone, *parts, fold=0):
    return datetime(*parts, tzinfo=zone, fold=fold)


def fires(rule, start, count, anchor=ANCHOR):
    """The next ``count`` fire times after ``start``, in the rule's zone when it has one."""
    zone = getattr(rule, "timezone", UTC)
    found, moment = [], start
    for _ in range(count):
        moment = rule.next_after(moment, anchor)
        found.append(moment.astimezone(zone))
    return found


# -- intervals ------------------------------------------------------------------


def test_an_interval_fires_on_its_grid_from_the_anchor():
    every = Interval(3600)
    assert every.next_after(ANCHOR - timedelta(days=1), ANCHOR) == ANCHOR
    assert every.next_after(ANCHOR, ANCHOR) == ANCHOR + timedelta(hours=1)
    late = ANCHOR + timedelta(hours=5, minutes=59)
    assert every.next_after(late, ANCHOR) == ANCHOR + timedelta(hours=6)


def test_an_interval_is_absolute_across_daylight_saving():
    anchor = local(BERLIN, 2026, 3, 29, 0, 0)  # the clocks go forward at 02:00
    times = fires(Interval(3600), anchor, 3, anchor=anchor)
    assert [t.astimezone(BERLIN).hour for t in times] == [1, 3, 4]


@pytest.mark.parametrize("bad", [0, -5, "60", True, float("inf"), None])
def test_an_interval_must_be_a_positive_number(bad):
    with pytest.raises(RecurrenceError, match="seconds must be a positive number"):
        Interval(bad)


# -- crontabs ---------------------------------------------------------------------


def test_a_crontab_with_lists_ranges_steps_and_names():
    rule = Cron("0,30 9-10 * * mon-fri", UTC)
    start = datetime(2026, 11, 20, 10, 31, tzinfo=UTC)  # a Friday
    assert fires(rule, start, 3) == [
        datetime(2026, 11, 23, 9, 0, tzinfo=UTC),
        datetime(2026, 11, 23, 9, 30, tzinfo=UTC),
        datetime(2026, 11, 23, 10, 0, tzinfo=UTC),
    ]
    assert Cron("*/20 * * * *", UTC).next_after(start, ANCHOR).minute == 40
    assert Cron("0 0 1 jan,jul *", UTC).next_after(start, ANCHOR) == datetime(
        2027, 1, 1, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("alias", "expected"),
    [
        ("@hourly", datetime(2026, 5, 17, 13, 0, tzinfo=UTC)),
        ("@daily", datetime(2026, 5, 18, tzinfo=UTC)),
        ("@midnight", datetime(2026, 5, 18, tzinfo=UTC)),
        ("@weekly", datetime(2026, 5, 24, tzinfo=UTC)),  # Sunday
        ("@monthly", datetime(2026, 6, 1, tzinfo=UTC)),
        ("@yearly", datetime(2027, 1, 1, tzinfo=UTC)),
        ("@annually", datetime(2027, 1, 1, tzinfo=UTC)),
    ],
)
def test_crontab_aliases(alias, expected):
    assert Cron(alias, UTC).next_after(datetime(2026, 5, 17, 12, 5, tzinfo=UTC), ANCHOR) == expected


def test_with_day_of_month_and_day_of_week_either_day_fires():
    rule = Cron("0 12 13 * fri", UTC)  # the 13th, and every Friday
    days = [t.day for t in fires(rule, datetime(2026, 2, 1, tzinfo=UTC), 5)]
    assert days == [6, 13, 20, 27, 6]  # Fri 6, the 13th (a Friday too), Fri 20, Fri 27, Fri Mar 6


def test_month_ends_and_leap_years():
    last_feb = Cron("0 0 29 2 *", UTC)
    assert last_feb.next_after(datetime(2026, 1, 1, tzinfo=UTC), ANCHOR) == datetime(
        2028, 2, 29, tzinfo=UTC
    )
    thirty_first = fires(Cron("0 0 31 * *", UTC), datetime(2026, 1, 31, 1, tzinfo=UTC), 3)
    assert [(t.month, t.day) for t in thirty_first] == [(3, 31), (5, 31), (7, 31)]


def test_the_crontab_is_read_in_its_time_zone():
    rule = Cron("0 9 * * *", NEW_YORK)
    fire = rule.next_after(datetime(2026, 7, 1, tzinfo=UTC), ANCHOR)
    assert fire == datetime(2026, 7, 1, 13, 0, tzinfo=UTC)  # 09:00 EDT


@pytest.mark.parametrize(
    ("zone", "day"),
    [(BERLIN, datetime(2026, 3, 29)), (NEW_YORK, datetime(2026, 3, 8))],
)
def test_a_wall_time_that_does_not_exist_fires_when_the_clocks_jump(zone, day):
    rule = Cron("30 2 * * *", zone)
    before = local(zone, day.year, day.month, day.day - 1, 12, 0)
    gap_day, next_day = fires(rule, before, 2)
    assert (gap_day.day, gap_day.hour, gap_day.minute) == (day.day, 3, 0)
    assert (next_day.day, next_day.hour, next_day.minute) == (day.day + 1, 2, 30)


@pytest.mark.parametrize(
    ("zone", "day"),
    [(BERLIN, datetime(2026, 10, 25)), (NEW_YORK, datetime(2026, 11, 1))],
)
def test_a_wall_time_that_occurs_twice_fires_once(zone, day):
    twice = 2 if zone is BERLIN else 1  # the hour that repeats: 02:xx in Berlin, 01:xx in New York
    rule = Cron(f"30 {twice} * * *", zone)
    eve = day - timedelta(days=1)
    before = local(zone, eve.year, eve.month, eve.day, 12, 0)
    first, second = fires(rule, before, 2)
    assert (first.day, first.hour, first.fold) == (day.day, twice, 0)
    assert (second.day, second.hour) == (day.day + 1, twice)


def test_every_quarter_hour_across_the_repeated_hour_fires_each_wall_time_once():
    rule = Cron("*/15 * * * *", BERLIN)
    start = local(BERLIN, 2026, 10, 25, 1, 50)
    times = fires(rule, start, 6)
    walls = [(t.hour, t.minute) for t in times]
    assert walls == [(2, 0), (2, 15), (2, 30), (2, 45), (3, 0), (3, 15)]
    utc = [t.astimezone(UTC) for t in times]  # same-zone subtraction would use wall times
    gaps = {b - a for a, b in itertools.pairwise(utc)}
    assert timedelta(hours=1, minutes=15) in gaps  # the repeated 02:00-03:00 is skipped


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("61 * * * *", "bad minute field '61'"),
        ("* 24 * * *", "bad hour field '24'"),
        ("* * 0 * *", "bad day-of-month field '0'"),
        ("* * * 13 *", "bad month field '13'"),
        ("* * * * funday", "bad day-of-week field 'funday'"),
        ("* * * *", "has 4 field"),
        ("@fortnightly", "unknown crontab alias"),
        ("0 0 30 2 *", "never fires"),
        (5, "must be a string"),
    ],
)
def test_a_bad_crontab_names_the_bad_part(expression, message):
    with pytest.raises(RecurrenceError, match=message):
        Cron(expression, UTC)


# -- the field form -------------------------------------------------------------------


def test_the_field_form_counts_days_of_week_from_monday():
    assert cron_from_fields(minutes=[0, 30]) == "0,30 * * * *"
    assert cron_from_fields(hours=5, dow=0) == "0 5 * * 1"  # Monday
    assert cron_from_fields(hours=[5], dow=[5, 6]) == "0 5 * * 0,6"  # Saturday, Sunday
    assert cron_from_fields(minutes=15, dom=1, months=[1, 7]) == "15 * 1 1,7 *"
    assert cron_from_fields() == "* * * * *"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"minutes": 60}, "minutes value 60 is out of range 0-59"),
        ({"dow": 7}, "dow value 7 is out of range 0-6"),
        ({"hours": ["5"]}, "hours must hold integers"),
        ({"months": []}, "months is an empty list"),
    ],
)
def test_bad_fields_are_named(fields, message):
    with pytest.raises(RecurrenceError, match=message):
        cron_from_fields(**fields)


# -- rrules -------------------------------------------------------------------------


def test_an_rrule_says_what_cron_cannot():
    rule = RRule("FREQ=MONTHLY;BYMONTHDAY=-1;BYHOUR=23", BERLIN)
    times = fires(rule, datetime(2026, 1, 5, tzinfo=UTC), 3)
    assert [(t.month, t.day, t.hour, t.minute) for t in times] == [
        (1, 31, 23, 0),
        (2, 28, 23, 0),
        (3, 31, 23, 0),
    ]
    leap = fires(rule, datetime(2028, 2, 1, tzinfo=UTC), 1, anchor=datetime(2028, 1, 1, tzinfo=UTC))
    assert (leap[0].month, leap[0].day) == (2, 29)


def test_an_rrule_in_a_daylight_saving_gap_fires_when_the_clocks_jump():
    rule = RRule("FREQ=DAILY;BYHOUR=2;BYMINUTE=30", BERLIN)
    [fire] = fires(rule, local(BERLIN, 2026, 3, 28, 12, 0), 1)
    assert (fire.day, fire.hour, fire.minute) == (29, 3, 0)


def test_a_finished_rrule_fires_no_more():
    rule = RRule("FREQ=DAILY;COUNT=2;BYHOUR=6", UTC)
    assert rule.next_after(datetime(2026, 1, 1, 7, tzinfo=UTC), ANCHOR) == datetime(
        2026, 1, 2, 6, tzinfo=UTC
    )
    assert rule.next_after(datetime(2026, 1, 2, 7, tzinfo=UTC), ANCHOR) is None


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("FREQ=MONTHLY;BYMONTHDAYS=1", "unknown or empty part 'BYMONTHDAYS=1'"),
        ("FREQ=SOMETIMES", "rrule 'FREQ=SOMETIMES'"),
        ("", "non-empty string"),
    ],
)
def test_a_bad_rrule_names_the_bad_part(rule, message):
    with pytest.raises(RecurrenceError, match=message):
        RRule(rule, UTC)


# -- catching up and time zones --------------------------------------------------------


def test_due_between_keeps_the_latest_fires_up_to_the_limit():
    every = Interval(60)
    start, end = ANCHOR, ANCHOR + timedelta(minutes=10)
    assert len(every.due_between(start, end, ANCHOR, limit=100)) == 11
    latest = every.due_between(start, end, ANCHOR, limit=3)
    assert latest == [ANCHOR + timedelta(minutes=m) for m in (8, 9, 10)]


def test_time_zones_are_named_or_refused():
    assert get_timezone("Europe/Berlin") == BERLIN
    with pytest.raises(RecurrenceError, match="unknown time zone 'Mars/Olympus'"):
        get_timezone("Mars/Olympus")


def test_to_timeline_moves_a_gap_to_its_end():
    assert to_timeline(datetime(2026, 3, 29, 2, 15), BERLIN) == datetime(
        2026, 3, 29, 1, 0, tzinfo=UTC
    )


@pytest.mark.parametrize(
    "rule",
    [
        Interval(3600),
        Cron("*/15 * * * *", BERLIN),
        Cron("30 2 * * *", BERLIN),
        Cron("0 1 * * *", NEW_YORK),
        RRule("FREQ=DAILY;BYHOUR=2;BYMINUTE=30", BERLIN),
        RRule("FREQ=MONTHLY;BYMONTHDAY=-1;BYHOUR=23", BERLIN),
    ],
)
def test_the_latest_fire_agrees_with_stepping_forward_across_daylight_saving(rule):
    anchor = datetime(2026, 1, 1, tzinfo=UTC)
    start = datetime(2026, 3, 27, tzinfo=UTC)
    forward = [rule.next_after(start, anchor)]
    while forward[-1] < datetime(2026, 11, 3, tzinfo=UTC) and len(forward) < 400:
        forward.append(rule.next_after(forward[-1], anchor))
    for earlier, later in itertools.pairwise(forward):
        assert rule.latest_at_or_before(later - timedelta(microseconds=1), anchor) == earlier
        assert rule.latest_at_or_before(later, anchor) == later


def test_catching_up_after_a_year_takes_only_the_fires_it_keeps():
    calls = []

    class Counted(Cron):
        def latest_at_or_before(self, moment, anchor):
            calls.append(moment)
            return super().latest_at_or_before(moment, anchor)

    rule = Counted("* * * * *", UTC)  # every minute: 525,600 fires in a year
    start = datetime(2025, 1, 1, tzinfo=UTC)
    end = datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC)
    times = rule.due_between(start, end, start, limit=3)
    assert times == [end.replace(second=0) - timedelta(minutes=m) for m in (2, 1, 0)]
    assert len(calls) == 3  # three steps back from the end, not a year of steps forward
