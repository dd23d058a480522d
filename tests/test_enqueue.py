from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from background_task.core.schedules import TaskSchedule
from background_task.models import Task
from background_task.signals import task_created
from tests.testapp import tasks as fixtures

pytestmark = pytest.mark.django_db


def test_call_stores_a_row_and_returns_it():
    before = timezone.now()
    task = fixtures.add(1, 2)
    assert isinstance(task, Task)
    row = Task.objects.get(pk=task.pk)
    assert row.task_name == "tests.testapp.tasks.add"
    assert row.task_params == "[[1, 2], {}]"
    assert row.params() == ([1, 2], {})
    assert row.status == "waiting" and row.attempts == 0 and row.locked_by is None
    assert before + timedelta(seconds=59) < row.run_at <= timezone.now() + timedelta(seconds=60)
    assert len(row.task_id) == 36 and row.enqueued_at is not None
    assert row.scheduled_at == row.run_at


def test_a_call_without_a_schedule_is_due_the_moment_it_is_queued():
    before = timezone.now()
    task = fixtures.noop()
    row = Task.objects.get(pk=task.pk)
    assert before <= row.run_at <= timezone.now()
    assert row.run_at == row.scheduled_at == row.enqueued_at == task.run_at
    later = Task.objects.get(pk=fixtures.noop(schedule=30).pk)
    assert later.run_at == later.scheduled_at
    assert abs(later.run_at - later.enqueued_at - timedelta(seconds=30)) < timedelta(seconds=1)


def test_control_keywords_never_reach_the_function():
    creator = User.objects.create(username="c")
    when = datetime(2030, 1, 1, tzinfo=UTC)
    until = when + timedelta(days=7)
    task = fixtures.noop(
        schedule=when,
        priority=7,
        queue="q",
        verbose_name="Nice",
        creator=creator,
        repeat=Task.DAILY,
        repeat_until=until,
    )
    row = Task.objects.get(pk=task.pk)
    assert row.task_params == "[[], {}]"
    assert (row.run_at, row.priority, row.queue, row.verbose_name) == (when, 7, "q", "Nice")
    assert row.creator == creator
    assert (row.repeat, row.repeat_until) == (86400, until)
    assert list(Task.objects.created_by(creator)) == [row]


def test_per_call_schedule_forms():
    now = timezone.now()
    assert fixtures.noop(schedule=90).run_at >= now + timedelta(seconds=89)
    assert fixtures.noop(schedule=timedelta(minutes=20)).run_at >= now + timedelta(minutes=19)
    assert fixtures.noop(schedule={"priority": 4}).priority == 4
    assert fixtures.noop(schedule=TaskSchedule(priority=3), priority=9).priority == 9


def test_decorator_defaults_are_stored():
    row = Task.objects.get(pk=fixtures.custom().pk)
    assert (row.max_attempts, row.timeout, row.priority, row.verbose_name) == (2, 30.0, 5, "Custom")


def test_unserializable_argument_writes_nothing():
    with pytest.raises(TypeError, match="positional argument 0 of type object"):
        fixtures.record(object())
    with pytest.raises(TypeError, match="keyword argument 'key'"):
        fixtures.record(key=[1, complex(1, 2)])
    assert not Task.objects.exists()


@pytest.mark.parametrize(
    ("options", "error", "fragment"),
    [
        ({"queue": "q" * 191}, ValueError, "Queue name"),
        ({"schedule": "tomorrow"}, TypeError, "schedule must be"),
        ({"priority": "high"}, TypeError, "priority must be an integer"),
        ({"repeat": "daily"}, TypeError, "repeat must be"),
        ({"repeat_until": "2030-01-01"}, TypeError, "repeat_until must be a datetime"),
        ({"verbose_name": 5}, TypeError, "verbose_name must be a string"),
    ],
)
def test_bad_call_options_raise_and_write_nothing(options, error, fragment):
    with pytest.raises(error, match=fragment):
        fixtures.noop(**options)
    assert not Task.objects.exists()


def test_creator_needs_an_integer_primary_key():
    class Fake:
        pk = "abc"

    with pytest.raises(ValueError, match="integer primary key"):
        fixtures.noop(creator=Fake())


def test_task_created_signal():
    received = []

    def receiver(sender, task, **kwargs):
        received.append((sender.__name__, task.pk))

    task_created.connect(receiver)
    try:
        task = fixtures.noop()
    finally:
        task_created.disconnect(receiver)
    assert received == [("DBTaskRunner", task.pk)]


def test_check_existing_and_reschedule_existing():
    first = fixtures.record("a", schedule=100)
    assert (
        fixtures.record("a", schedule={"run_at": 5, "action": TaskSchedule.CHECK_EXISTING}) is None
    )
    assert fixtures.record("b", schedule={"action": TaskSchedule.CHECK_EXISTING}) is not None
    moved = fixtures.record(
        "a", schedule={"run_at": 1000, "priority": 3, "action": TaskSchedule.RESCHEDULE_EXISTING}
    )
    assert moved is None
    first.refresh_from_db()
    assert first.priority == 3 and first.run_at > timezone.now() + timedelta(seconds=900)


def test_remove_existing_tasks_honours_the_queue():
    fixtures.record("a", queue="one")
    other_queue = fixtures.record("a", queue="two")
    fixtures.record("a", queue="one", remove_existing_tasks=True)
    assert Task.objects.filter(queue="one").count() == 1
    assert Task.objects.filter(pk=other_queue.pk).exists()


def test_remove_existing_tasks_leaves_running_tasks():
    running = fixtures.record("a")
    running.lock("someone")
    fixtures.record("a", remove_existing_tasks=True)
    assert Task.objects.filter(pk=running.pk).exists()
    assert Task.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_enqueue_in_atomic_is_rolled_back_with_it():
    with pytest.raises(RuntimeError), transaction.atomic():
        fixtures.noop()
        assert Task.objects.count() == 1
        raise RuntimeError("rollback")
    assert Task.objects.count() == 0
    with transaction.atomic():
        fixtures.noop()
    assert Task.objects.count() == 1


def test_bulk_stores_every_call_in_few_inserts(django_assert_max_num_queries):
    from background_task import call

    # Two INSERTs, in a savepoint (the test runs inside a transaction).
    with django_assert_max_num_queries(4):
        rows = fixtures.record.bulk([("a",), call("b"), call(key="c")], priority=4, batch_size=2)
    assert len(rows) == 3
    stored = list(Task.objects.order_by("id").values_list("task_params", "priority", "queue"))
    assert stored == [
        ('[["a"], {}]', 4, "records"),
        ('[["b"], {}]', 4, "records"),
        ('[[], {"key": "c"}]', 4, "records"),
    ]
    assert len({row.task_id for row in rows}) == 3


def test_bulk_with_a_bad_item_stores_nothing():
    from django.db import transaction

    with pytest.raises(TypeError, match="bulk\\(\\) item 1 must be a tuple"):
        fixtures.record.bulk([("a",), "b"])
    with pytest.raises(TypeError, match="positional argument 0 of type object"):
        fixtures.record.bulk([("a",), (object(),)])
    with pytest.raises(ValueError, match="schedule actions"):
        fixtures.record.bulk([("a",)], schedule={"action": TaskSchedule.CHECK_EXISTING})
    # Rows are written as the items are serialized: a bad item after whole
    # batches were written rolls them back, and a caller's transaction goes on.
    with transaction.atomic():
        kept = fixtures.record("kept")
        with pytest.raises(TypeError, match="bulk\\(\\) item 7 must be a tuple"):
            fixtures.record.bulk([*[(str(i),) for i in range(7)], "bad"], batch_size=2)
        assert list(Task.objects.values_list("pk", flat=True)) == [kept.pk]
    assert Task.objects.count() == 1


def test_bulk_sends_task_created_when_someone_listens():
    received = []

    def receiver(sender, task, **kwargs):
        received.append(task.task_id)

    task_created.connect(receiver)
    try:
        rows = fixtures.noop.bulk([(), ()])
    finally:
        task_created.disconnect(receiver)
    assert received == [row.task_id for row in rows]
