from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.test import override_settings
from django.utils import timezone

from background_task.core.schedules import TaskSchedule, next_repetition, repeat_seconds

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_create_accepts_every_1_2_8_form():
    assert TaskSchedule.create(None) == TaskSchedule()
    assert TaskSchedule.create(60).run_at_after(NOW) == NOW + timedelta(seconds=60)
    assert TaskSchedule.create(1.5).run_at_after(NOW) == NOW + timedelta(seconds=1.5)
    assert TaskSchedule.create(timedelta(minutes=2)).run_at_after(NOW) == NOW + timedelta(minutes=2)
    when = NOW + timedelta(days=1)
    assert TaskSchedule.create(when).run_at_after(NOW) == when
    schedule = TaskSchedule.create(
        {"run_at": 10, "priority": 3, "action": TaskSchedule.CHECK_EXISTING}
    )
    assert (schedule.priority, schedule.action) == (3, TaskSchedule.CHECK_EXISTING)
    same = TaskSchedule(run_at=5)
    assert TaskSchedule.create(same) is same


def test_zero_and_none_mean_now():
    assert TaskSchedule.create(0).run_at_after(NOW) == NOW
    assert TaskSchedule().run_at_after(NOW) == NOW
    assert TaskSchedule().priority == 0
    assert TaskSchedule().action == TaskSchedule.SCHEDULE


def test_merge_prefers_own_values():
    call = TaskSchedule(priority=5)
    default = TaskSchedule(run_at=60, priority=1, action=TaskSchedule.CHECK_EXISTING)
    merged = call.merge(default)
    assert merged == TaskSchedule(run_at=60, priority=5, action=TaskSchedule.CHECK_EXISTING)


def test_repr_matches_1_2_8():
    assert repr(TaskSchedule(run_at=5, priority=2)) == "TaskSchedule(run_at=5, priority=2)"


@pytest.mark.parametrize("value", ["10", b"1", [1], object(), True])
def test_bad_schedule_values_raise_type_error_naming_the_value(value):
    with pytest.raises(TypeError, match="schedule must be"):
        TaskSchedule.create(value)


def test_bad_schedule_details():
    with pytest.raises(ValueError, match="finite"):
        TaskSchedule.create(float("nan"))
    with pytest.raises(TypeError, match="unknown keys"):
        TaskSchedule.create({"run_at": 1, "priorty": 2})
    with pytest.raises(ValueError, match="action"):
        TaskSchedule(action=7)
    with pytest.raises(TypeError, match="priority must be an integer"):
        TaskSchedule(priority="high")


@override_settings(USE_TZ=True, TIME_ZONE="Europe/Berlin")
def test_naive_datetime_is_read_in_the_current_time_zone():
    naive = datetime(2026, 7, 1, 9, 0)
    resolved = TaskSchedule.create(naive).run_at_after(NOW)
    assert timezone.is_aware(resolved)
    assert resolved == datetime(2026, 7, 1, 9, 0, tzinfo=ZoneInfo("Europe/Berlin"))


def test_repeat_seconds():
    assert repeat_seconds(None) == 0
    assert repeat_seconds(3600) == 3600
    assert repeat_seconds(timedelta(hours=2)) == 7200
    with pytest.raises(TypeError, match="repeat must be"):
        repeat_seconds("hourly")
    with pytest.raises(ValueError, match=">= 0"):
        repeat_seconds(-5)


def test_next_repetition_keeps_the_phase():
    start = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    hour = 3600
    # Ran on time: next slot one period later.
    assert next_repetition(start, hour, start + timedelta(minutes=5), None) == start + timedelta(
        hours=1
    )
    # A week of downtime: the next slot not in the past, on the original grid (1.2.8's test).
    later = start + timedelta(weeks=1, minutes=30)
    assert next_repetition(start, hour, later, None) == start + timedelta(weeks=1, hours=1)
    # Exactly on a slot: that slot.
    on_slot = start + timedelta(hours=3)
    assert next_repetition(start, hour, on_slot, None) == on_slot


def test_next_repetition_respects_until_and_never():
    start = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    assert next_repetition(start, 0, start, None) is None
    assert next_repetition(start, 3600, start, start + timedelta(minutes=30)) is None
    until = start + timedelta(hours=1)
    assert next_repetition(start, 3600, start, until) == until


def test_a_relativedelta_repeat_is_a_calendar_rule():
    import json

    from dateutil.relativedelta import relativedelta

    from background_task.core.schedules import repeat_fields

    seconds, rule = repeat_fields(relativedelta(months=1))
    assert json.loads(rule) == {"months": 1} and seconds == 31 * 86400
    assert repeat_fields(relativedelta(weeks=2))[1] == '{"days": 14}'
    assert repeat_fields(3600) == (3600, None)
    with pytest.raises(ValueError, match="only relative fields"):
        repeat_fields(relativedelta(day=31))
    with pytest.raises(ValueError, match="must move forward"):
        repeat_fields(relativedelta(months=-1))


def test_monthly_repeats_keep_the_day_and_the_wall_clock_time():
    from background_task.core.schedules import next_calendar_repetition

    berlin = ZoneInfo("Europe/Berlin")
    scheduled = datetime(2026, 1, 31, 9, 0, tzinfo=berlin)  # 09:00 CET
    months = '{"months": 1}'
    feb = next_calendar_repetition(scheduled, months, scheduled, None, berlin)
    assert feb.astimezone(berlin).replace(tzinfo=None) == datetime(2026, 2, 28, 9, 0)
    # Counted from the first run, not from February: the 31st comes back.
    mar = next_calendar_repetition(scheduled, months, feb + timedelta(seconds=1), None, berlin)
    assert mar.astimezone(berlin).replace(tzinfo=None) == datetime(2026, 3, 31, 9, 0)  # CEST
    # Missed months are skipped, and repeat_until is never passed.
    late = datetime(2026, 6, 15, tzinfo=UTC)
    assert next_calendar_repetition(scheduled, months, late, None, berlin).month == 6
    assert next_calendar_repetition(scheduled, months, late, late, berlin) is None
