"""Schedules in the database: decorators, settings, sync, firing exactly once, catch-up, overlap."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.test import override_settings

from background_task.api.periodic import ScheduleError, from_setting
from background_task.api.registry import Tasks
from background_task.checks import check_schedules
from background_task.models import Schedule, ScheduleFire, Task
from background_task.runtime import scheduler

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def job(*args, **kwargs):
    return None


def registry_with(**options) -> Tasks:
    registry = Tasks()
    registry.periodic_task(name="every-minute", seconds=60, **options)(job)
    return registry


def fire(registry, now):
    return scheduler.fire_due(registry, now)


def synced(registry, now=T0):
    scheduler.sync(scheduler.definitions(registry), now)
    return Schedule.objects.get()


# -- declaring -----------------------------------------------------------------------


def test_the_decorators_register_a_task_and_its_schedule():
    registry = Tasks()
    proxy = registry.cron_task("0 5 * * tue", queue="low", args=[1], kwargs={"a": 2})(job)
    assert proxy.name in registry  # still a task: it can be queued by hand
    [definition] = registry.schedules()
    assert (definition.kind, definition.expression, definition.queue) == (
        "cron",
        "0 5 * * tue",
        "low",
    )
    assert (definition.args, dict(definition.kwargs)) == ((1,), {"a": 2})


def test_the_field_form_and_a_crontab_string_that_wins_over_it():
    registry = Tasks()
    registry.cron_task(minutes=[0, 30], hours=9, dow=0, name="fields")(job)
    registry.cron_task("15 * * * *", minutes=[0, 30], name="string")(job)
    expressions = {d.name: d.expression for d in registry.schedules()}
    assert expressions == {"fields": "0,30 9 * * 1", "string": "15 * * * *"}


def test_an_rrule_on_the_decorator():
    registry = Tasks()
    registry.cron_task(rrule="FREQ=MONTHLY;BYMONTHDAY=-1;BYHOUR=23", name="month-end")(job)
    assert registry.schedules()[0].kind == "rrule"


@pytest.mark.parametrize(
    ("decorate", "message"),
    [
        (lambda r: r.cron_task("61 * * * *"), "bad minute field '61'"),
        (lambda r: r.cron_task(hours=25), "hours value 25 is out of range"),
        (lambda r: r.cron_task(rrule="FREQ=DAILY;BYSOMETHING=1"), "unknown or empty part"),
        (lambda r: r.cron_task("* * * * *", timezone="Nowhere/City"), "unknown time zone"),
        (lambda r: r.periodic_task(seconds=0), "seconds must be a positive number"),
        (lambda r: r.periodic_task(catch_up="sometimes"), "catch_up must be one of"),
        (lambda r: r.periodic_task(args=[object()]), "not JSON serializable"),
    ],
)
def test_a_bad_schedule_fails_at_decoration_time_naming_the_problem(decorate, message):
    with pytest.raises(ScheduleError, match=message):
        decorate(Tasks())(job)


def test_the_setting_in_both_forms():
    short, full = from_setting(
        {
            "app.tasks.my_action": "*/30 * * * *",
            "nightly": {
                "task": "app.tasks.report",
                "cron": "0 2 * * *",
                "args": [1],
                "queue": "low",
            },
        }
    )
    assert (short.name, short.task_name, short.expression) == (
        "app.tasks.my_action",
        "app.tasks.my_action",
        "*/30 * * * *",
    )
    assert (full.task_name, full.queue, full.args, full.source) == (
        "app.tasks.report",
        "low",
        (1,),
        "settings",
    )


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            {"x": {"task": "t", "cron": "0 2 * * *", "colour": "red"}},
            "unknown option\\(s\\) colour",
        ),
        ({"x": "0 99 * * *"}, "Schedule 'x': crontab '0 99 \\* \\* \\*': bad hour field"),
        ({"x": 5}, "expected a crontab string or a dict"),
    ],
)
def test_bad_settings_schedules_name_the_schedule(setting, message):
    with pytest.raises(ScheduleError, match=message):
        from_setting(setting)


@override_settings(BACKGROUND_TASK_SCHEDULE={"nightly": {"task": "no.such.task", "cron": "@daily"}})
def test_a_system_check_reports_a_settings_schedule_naming_an_unknown_task():
    [error] = check_schedules()
    assert error.id == "background_task.E012"
    assert "'nightly'" in error.msg and "'no.such.task', which is not registered" in error.msg


# -- sync -------------------------------------------------------------------------------


def test_sync_adds_updates_and_disables_without_deleting():
    registry = registry_with()
    row = synced(registry)
    assert (row.kind, row.defined, row.next_run_at) == ("interval", True, T0 + timedelta(minutes=1))

    changed = Tasks()
    changed.periodic_task(name="every-minute", seconds=300)(job)
    later = T0 + timedelta(seconds=10)
    counts = scheduler.sync(scheduler.definitions(changed), later)
    row.refresh_from_db()
    assert counts["updated"] == 1
    assert (row.expression, row.anchor, row.next_run_at) == (
        "300.0",
        later,
        later + timedelta(minutes=5),
    )

    assert scheduler.sync([], later)["removed"] == 1
    row.refresh_from_db()
    assert not row.defined  # kept, with its history
    assert fire(changed, later + timedelta(hours=1)) == 0

    scheduler.sync(scheduler.definitions(changed), later)
    row.refresh_from_db()
    assert row.defined


def test_sync_twice_changes_nothing_and_start_now_fires_at_first_sync():
    registry = registry_with(start_now=True)
    row = synced(registry)
    assert row.next_run_at == T0
    assert scheduler.sync(scheduler.definitions(registry), T0 + timedelta(seconds=5)) == {
        "added": 0,
        "updated": 0,
        "removed": 0,
    }
    assert fire(registry, T0) == 1
    task = Task.objects.get()
    assert (task.task_name, task.run_at) == ("every-minute", T0)


# -- firing -----------------------------------------------------------------------------


def test_a_due_schedule_fires_once_per_time_with_its_arguments_and_options():
    registry = Tasks()
    registry.periodic_task(
        name="report",
        seconds=60,
        args=[7],
        kwargs={"to": "ops"},
        queue="low",
        priority=5,
        max_attempts=2,
        overlap=True,
        ttl=600,
    )(job)
    synced(registry)
    assert fire(registry, T0 + timedelta(seconds=59)) == 0
    assert fire(registry, T0 + timedelta(seconds=61)) == 1
    assert fire(registry, T0 + timedelta(seconds=61)) == 0  # nothing new is due
    task = Task.objects.get()
    assert task.params() == ([7], {"to": "ops"})
    assert (task.queue, task.priority, task.max_attempts, task.result_ttl) == ("low", 5, 2, 600)
    row = Schedule.objects.get()
    assert (row.last_run_at, row.last_task_id, row.next_run_at) == (
        T0 + timedelta(minutes=1),
        task.task_id,
        T0 + timedelta(minutes=2),
    )
    assert row.last_outcome() == "waiting"


def test_a_second_firing_of_the_same_time_is_impossible():
    registry = registry_with(overlap=True)
    row = synced(registry)
    due = row.next_run_at
    assert fire(registry, due) == 1
    # A worker that read the schedule before the first firing tries again.
    Schedule.objects.filter(pk=row.pk).update(next_run_at=due)
    assert fire(registry, due) == 0
    assert Task.objects.count() == 1 and ScheduleFire.objects.count() == 1
    with pytest.raises(IntegrityError), transaction.atomic():
        ScheduleFire.objects.create(schedule=row, fire_at=due)


@pytest.mark.parametrize(
    ("catch_up", "expected"),
    [("once", [T0 + timedelta(minutes=10)]), ("skip", []), ("all", None)],
)
def test_missed_fires_while_no_worker_ran(catch_up, expected):
    registry = registry_with(catch_up=catch_up, overlap=True)
    synced(registry)
    now = T0 + timedelta(minutes=10, seconds=45)  # ten fires missed
    fire(registry, now)
    times = sorted(Task.objects.values_list("run_at", flat=True))
    if expected is None:  # "all": every missed time, within the cap
        expected = [T0 + timedelta(minutes=m) for m in range(1, 11)]
    assert times == expected
    row = Schedule.objects.get()
    assert row.next_run_at == T0 + timedelta(minutes=11)  # back on the grid


def test_catch_up_all_is_capped():
    registry = registry_with(catch_up="all", catch_up_limit=3, overlap=True)
    synced(registry)
    fire(registry, T0 + timedelta(minutes=10, seconds=30))
    assert Task.objects.count() == 3


def test_skip_still_fires_a_time_that_is_only_a_little_late():
    registry = registry_with(catch_up="skip")
    synced(registry)
    assert fire(registry, T0 + timedelta(minutes=1, seconds=20)) == 1


def test_no_pile_up_while_the_previous_run_is_queued_or_running():
    registry = registry_with()
    synced(registry)
    assert fire(registry, T0 + timedelta(minutes=1)) == 1
    assert fire(registry, T0 + timedelta(minutes=2)) == 0  # the first run is still queued
    skipped = ScheduleFire.objects.get(fire_at=T0 + timedelta(minutes=2))
    assert skipped.task_id is None and "still queued or running" in skipped.skipped
    Task.objects.all().delete()  # it ran
    assert fire(registry, T0 + timedelta(minutes=3)) == 1


def test_a_disabled_schedule_does_not_fire_and_run_now_queues_off_the_grid():
    registry = registry_with()
    row = synced(registry)
    Schedule.objects.update(enabled=False)
    assert fire(registry, T0 + timedelta(minutes=5)) == 0
    task = scheduler.run_now(row, registry, T0)
    assert Task.objects.get().task_id == task.task_id
    row.refresh_from_db()
    assert row.last_task_id == task.task_id and row.next_run_at == T0 + timedelta(minutes=1)


def test_a_worker_fires_only_schedules_whose_task_it_knows():
    registry = registry_with(overlap=True)
    synced(registry)
    assert fire(Tasks(), T0 + timedelta(minutes=1)) == 0
    assert fire(registry, T0 + timedelta(minutes=1)) == 1


def test_cron_schedules_fire_on_their_wall_clock_times_in_their_zone():
    registry = Tasks()
    registry.cron_task("30 2 * * *", timezone="Europe/Berlin", name="nightly", overlap=True)(job)
    eve = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    row = synced(registry, eve)
    assert row.next_run_at == datetime(
        2026, 3, 29, 1, 0, tzinfo=UTC
    )  # 03:00 CEST: 02:30 is skipped
    fire(registry, row.next_run_at)
    row.refresh_from_db()
    assert row.next_run_at == datetime(2026, 3, 30, 0, 30, tzinfo=UTC)  # 02:30 CEST


def test_list_schedules_prints_them_and_json(capsys):
    import json

    synced(registry_with())
    call_command("list_schedules")
    text = capsys.readouterr().out
    assert "every-minute" in text and "every 60s" in text
    call_command("list_schedules", "--json")
    [entry] = json.loads(capsys.readouterr().out)
    assert entry["name"] == "every-minute" and entry["next_run_at"].startswith("2026-06-01T12:01")


def test_several_worker_processes_fire_each_time_exactly_once(start_worker):
    """Two supervisors with two workers each race for a schedule that fires
    every second: each fire time queues one task, none is missed."""
    import signal
    import time

    from tests.conftest import subprocess_env

    env = subprocess_env(DJANGO_SETTINGS_MODULE="tests.schedule_settings")
    groups = [start_worker("--workers", "2", "--sleep", "0.1", env=env) for _ in range(2)]
    time.sleep(8)
    for group in groups:
        group.signal(signal.SIGTERM)
    for group in groups:
        code, output = group.wait(timeout=30)
        assert code == 0, output
    schedule = Schedule.objects.get(name="tick")
    fires = list(ScheduleFire.objects.filter(schedule=schedule).order_by("fire_at"))
    assert len(fires) >= 4, f"only {len(fires)} fire(s) in 8s"
    # One fire per second of the grid, none twice, none missed.
    steps = {(b.fire_at - a.fire_at).total_seconds() for a, b in itertools.pairwise(fires)}
    assert steps == {1.0}
    assert fires[0].fire_at == schedule.anchor + timedelta(seconds=1)
    # Exactly one task per fire time.
    from background_task.models import CompletedTask

    queued = list(
        Task.objects.filter(task_name="tests.testapp.tasks.record").values_list(
            "task_id", "scheduled_at"
        )
    ) + list(
        CompletedTask.objects.filter(task_name="tests.testapp.tasks.record").values_list(
            "task_id", "scheduled_at"
        )
    )
    assert sorted(task_id for task_id, _ in queued) == sorted(fire.task_id for fire in fires)
    assert sorted(at for _, at in queued) == [fire.fire_at for fire in fires]
