import os
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import override_settings
from django.utils import timezone

from background_task.models import CompletedTask, Task
from tests.testapp import tasks as fixtures

pytestmark = pytest.mark.django_db


def test_new_task_is_unsaved_and_1_2_8_shaped():
    task = Task.objects.new_task("some.task", args=1, kwargs={"a": 2}, priority=2, queue="q")
    assert task.pk is None
    assert task.task_params == '[[1], {"a": 2}]'
    task.save()
    assert Task.objects.get_task("some.task", [1], {"a": 2}).get() == task
    Task.objects.drop_task("some.task", [1], {"a": 2})
    assert not Task.objects.exists()


def test_find_available_orders_by_priority_then_run_at():
    now = timezone.now()
    low = fixtures.noop(priority=1, schedule=-30)
    high_late = fixtures.noop(priority=5, schedule=-10)
    high_early = fixtures.noop(priority=5, schedule=-20)
    fixtures.noop(priority=9, schedule=60)  # not due
    assert list(Task.objects.find_available()) == [high_early, high_late, low]
    with override_settings(BACKGROUND_TASK_PRIORITY_ORDERING="ASC"):
        assert list(Task.objects.find_available()) == [low, high_early, high_late]
    assert now


def test_find_available_by_queue_and_lock_expiry():
    a = fixtures.noop(queue="a")
    fixtures.noop(queue="b")
    assert list(Task.objects.find_available("a")) == [a]
    locked = a.lock("w1")
    assert locked.locked_by == "w1" and locked.status == "running"
    assert locked.started_at == locked.last_attempted_at == locked.locked_at
    assert a.lock("w2") is None
    assert list(Task.objects.find_available("a")) == []
    Task.objects.filter(pk=a.pk).update(locked_at=timezone.now() - timedelta(hours=2))
    assert list(Task.objects.find_available("a")) == [a]
    assert a.lock("w2").locked_by == "w2"


def test_locked_and_unlocked_do_not_overlap():
    now = timezone.now()
    fresh = fixtures.noop()
    fresh.lock("w")
    stale = fixtures.noop()
    stale.lock("w")
    Task.objects.filter(pk=stale.pk).update(locked_at=now - timedelta(hours=2))
    free = fixtures.noop()
    assert set(Task.objects.locked(now)) == {fresh}
    assert set(Task.objects.unlocked(now)) == {stale, free}


def test_increment_attempts_writes_only_that_column():
    task = fixtures.noop()
    Task.objects.filter(pk=task.pk).update(priority=9)
    task.increment_attempts()
    task.refresh_from_db()
    assert (task.attempts, task.priority) == (1, 9)


def test_deleted_row_is_not_resurrected_by_a_stale_instance():
    task = fixtures.noop()
    Task.objects.filter(pk=task.pk).delete()
    task.increment_attempts()
    assert not Task.objects.exists()


def test_create_completed_task_and_history_queries():
    user = User.objects.create(username="u")
    task = fixtures.noop(creator=user)
    completed = task.create_completed_task()
    assert completed.task_id == task.task_id and completed.status == "done"
    assert completed.creator == user
    assert list(CompletedTask.objects.succeeded(within=timedelta(minutes=1))) == [completed]
    assert list(CompletedTask.objects.created_by(user)) == [completed]
    failed = fixtures.noop()
    failed.failed_at = timezone.now()
    failed.task_id = "another"
    done_failed = failed.create_completed_task()
    assert done_failed.status == "error"
    assert list(CompletedTask.objects.failed(within=timedelta(minutes=1))) == [done_failed]
    assert str(completed).startswith("tests.testapp.tasks.noop - ")


def test_create_repetition_keeps_phase_from_scheduled_time():
    task = fixtures.noop(repeat=Task.HOURLY, schedule=-10)
    # A retry (one attempt counted) moved run_at; the repetition still
    # follows the original grid.
    Task.objects.filter(pk=task.pk).update(run_at=timezone.now() + timedelta(minutes=7), attempts=1)
    task.refresh_from_db()
    repetition = task.create_repetition()
    assert repetition.run_at == task.scheduled_at + timedelta(hours=1)
    assert repetition.task_id != task.task_id and repetition.repeat == Task.HOURLY
    assert fixtures.noop().create_repetition() is None


def test_a_run_at_moved_before_the_first_attempt_sets_the_repetition_grid():
    task = fixtures.noop(repeat=Task.HOURLY, schedule=-10)
    # Moved by hand (the admin, a data migration) before any attempt: 1.2.8
    # repeats from the new time, and so do we.
    moved = timezone.now() - timedelta(days=1, minutes=20)
    Task.objects.filter(pk=task.pk).update(run_at=moved)
    task.refresh_from_db()
    repetition = task.create_repetition()
    assert repetition.run_at == moved + timedelta(hours=25)


def test_locked_by_pid_running():
    task = fixtures.noop()
    assert task.locked_by_pid_running() is None
    task.locked_by = str(os.getpid())
    assert task.locked_by_pid_running() is True
    import socket

    task.locked_by = f"{socket.gethostname()[:32]}:999999:abcd"
    assert task.locked_by_pid_running() is False
    task.locked_by = "elsewhere:1:abcd"
    assert task.locked_by_pid_running() is None


def test_str_and_has_error():
    task = fixtures.noop(verbose_name="Pretty")
    assert str(task) == "Pretty"
    assert not task.has_error()


def test_new_task_validates_like_a_call():
    with pytest.raises(ValueError, match="Queue name"):
        Task.objects.new_task("some.task", queue="q" * 191)
    with pytest.raises(TypeError, match="positional argument 0 of type object"):
        Task.objects.new_task("some.task", args=[object()])


def test_task_ids_are_time_ordered_uuid_strings():
    import time
    import uuid

    from background_task.store.ids import new_task_id, new_task_ids

    assert [len(list(new_task_ids(n))) for n in (0, 1, 1024, 1025)] == [0, 1, 1024, 1025]
    before = time.time_ns() // 1_000_000
    ids = [new_task_id() for _ in range(1000)] + list(new_task_ids(2100))
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert before <= parsed.int >> 80 <= after  # the first 48 bits: Unix milliseconds
    time.sleep(0.002)
    assert new_task_id()[:13] > max(ids)[:13]  # a later id sorts after
