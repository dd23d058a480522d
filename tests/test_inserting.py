"""The INSERTs that skip the ORM's per-instance work write what the ORM would."""

from __future__ import annotations

import os

import pytest
from django.db.models.signals import post_init, post_save
from django.forms.models import model_to_dict

from background_task.models import Task
from background_task.store.inserting import insert_one
from background_task.store.models import build_task
from tests.testapp import tasks as fixtures

pytestmark = pytest.mark.django_db

SKIP = {"id", "task_id"}


def columns(task: Task) -> dict[str, object]:
    row = Task.objects.get(pk=task.pk)
    return {k: v for k, v in model_to_dict(row).items() if k not in SKIP} | {
        "enqueued_at": row.enqueued_at,
        "task_id": row.task_id,
    }


def test_one_row_equals_what_save_writes(django_user_model) -> None:
    from django.utils import timezone

    creator = django_user_model.objects.create(username="c")
    now = timezone.now()
    options = dict(priority=3, queue="q", verbose_name="v", creator=creator, repeat=3600,
                   max_attempts=4, timeout=2.5, on_worker_lost="fail", result_ttl=60)  # fmt: skip
    fast = insert_one(build_task("a.b", [1, "x"], {"k": [1, 2]}, now=now, **options))
    slow = build_task("a.b", [1, "x"], {"k": [1, 2]}, now=now, **options)
    slow.save(force_insert=True)
    assert fast.pk is not None and not fast._state.adding and fast._state.db == "default"
    assert Task.objects.get(pk=fast.pk).task_id == fast.task_id
    fast_columns, slow_columns = columns(fast), columns(slow)
    assert fast_columns.pop("task_id") != slow_columns.pop("task_id")
    assert fast_columns == slow_columns


def test_bulk_rows_have_their_own_ids_arguments_and_lists() -> None:
    rows = fixtures.record.bulk([("a",), ("b",), ("c",)], batch_size=2)
    stored = {t.task_id: t for t in Task.objects.all()}
    assert [stored[r.task_id].task_params for r in rows] == [r.task_params for r in rows]
    assert len({r.task_id for r in rows}) == len({r.task_hash for r in rows}) == 3
    if rows[0].pk is not None:  # MySQL does not return ids from multi-row INSERTs
        assert [stored[r.task_id].pk for r in rows] == [r.pk for r in rows]
    rows[0].errors.append({"x": 1})
    assert rows[1].errors == []
    assert all(not r._state.adding for r in rows)


def test_receivers_of_model_signals_still_see_the_rows() -> None:
    saved, built = [], []

    def on_save(sender, instance, created, **kwargs):
        saved.append((instance.task_name, created))

    def on_init(sender, instance, **kwargs):
        built.append(instance)

    post_save.connect(on_save, sender=Task)
    post_init.connect(on_init, sender=Task)
    try:
        fixtures.noop()
        before = len(built)
        fixtures.record.bulk([("a",), ("b",)])
    finally:
        post_save.disconnect(on_save, sender=Task)
        post_init.disconnect(on_init, sender=Task)
    assert saved == [("tests.testapp.tasks.noop", True)]
    assert [t.task_name for t in built[:before]] == ["tests.testapp.tasks.noop"]
    assert len(built) - before >= 2  # the bulk rows were built with Task(...)


def test_rows_built_without_model_init_match_task_init() -> None:
    from django.utils import timezone

    from background_task.store.rows import new_row

    values = {"task_name": "a.b", "task_params": "[[], {}]", "priority": 2,
              "run_at": timezone.now(), "queue": "q"}  # fmt: skip
    fast, slow = new_row(Task, values), Task(**values)
    for field in Task._meta.concrete_fields:
        if field.name != "task_id":
            assert getattr(fast, field.attname) == getattr(slow, field.attname), field.name
    assert fast.task_id and fast.task_id != new_row(Task, values).task_id
    assert fast._state.adding and fast._state.db is None
    assert fast.errors is not new_row(Task, values).errors  # mutable defaults are not shared


def test_postgresql_runs_on_the_driver_asked_for() -> None:
    """DB_DRIVER=psycopg2 (a pass of ``make test``) really tests psycopg2."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's drivers")
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    assert is_psycopg3 is (os.environ.get("DB_DRIVER") != "psycopg2")


@pytest.mark.django_db(transaction=True)
def test_bulk_rows_wake_listening_workers_on_postgresql() -> None:
    """A bulk insert fires the table's statement trigger, so idle workers hear of it."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    from background_task.store.claim.listening import open_listener

    listener = open_listener(connection.get_connection_params(), "background_task")
    try:
        rows = fixtures.record.bulk([("a",), ("b",)])
        assert [row.pk for row in rows] == sorted(Task.objects.values_list("pk", flat=True))
        assert listener.wait(5)
        assert not listener.wait(0.2)  # one wake-up for the batch, consumed
    finally:
        listener.close()


@pytest.mark.django_db(transaction=True)
def test_the_kept_insert_cursor_follows_the_connection() -> None:
    """One cursor serves a connection's one-row INSERTs, yet reconnects,
    query logging, execute wrappers and other threads all see their own."""
    import threading

    from django.db import connection, connections
    from django.test.utils import CaptureQueriesContext

    first = fixtures.noop()
    connection.close()
    second = fixtures.noop()  # a new connection: a new cursor
    with CaptureQueriesContext(connection) as captured:
        fixtures.noop()
    assert any("INSERT" in query["sql"] for query in captured.captured_queries)
    seen = []

    def spy(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(spy):
        fixtures.noop()
    assert any(sql.startswith("INSERT") for sql in seen)

    made, errors = [], []

    def enqueue_elsewhere() -> None:
        try:
            made.append(fixtures.noop().pk)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=enqueue_elsewhere) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors and len(made) == 3
    assert Task.objects.count() == 7 and first.pk != second.pk


@pytest.mark.django_db(transaction=True)
def test_an_insert_leaves_no_write_lock_behind() -> None:
    """On SQLite a RETURNING statement holds the write lock until its rows
    are read: the kept cursor must read them all, or other writers wait."""
    import threading

    from django.db import connections

    fixtures.noop()
    errors = []

    def write_elsewhere() -> None:
        try:
            with connections["default"].cursor() as cursor:
                cursor.execute("UPDATE background_task SET priority = 5")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    writer = threading.Thread(target=write_elsewhere)
    writer.start()
    writer.join(30)
    assert not errors
    assert list(Task.objects.values_list("priority", flat=True)) == [5]
