"""A project whose queue lives on a database of its own, end to end.

Run by tests/test_routing.py as ``python tests/routed_scenario.py`` with
DJANGO_SETTINGS_MODULE=tests.routed_settings, ROUTED_DEFAULT, ROUTED_QUEUE
and ROUTED_GUARD_LOG set. The queue's tables exist only on ``queue`` and
tests/routedapp refuses (and logs) any query about them on ``default``, so a
path that ignored the routers fails here. Prints ``ok`` last on success.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import django  # noqa: E402

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connections, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

import background_task  # noqa: E402
from background_task.models import CompletedTask, Task  # noqa: E402
from background_task.store.models import PausedQueue, Schedule, WorkerProcess  # noqa: E402
from background_task.testing import run_immediately  # noqa: E402
from tests import admin_pages  # noqa: E402
from tests.testapp import tasks  # noqa: E402
from tests.testapp.models import Execution  # noqa: E402


def wait_until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {condition.__doc__ or condition}")
        time.sleep(0.05)


def tables(alias: str) -> list[str]:
    with connections[alias].cursor() as cursor:
        names = connections[alias].introspection.table_names(cursor)
    return [name for name in names if name.startswith("background_task")]


def create_databases() -> None:
    for alias in ("default", "queue"):
        connections[alias].creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
        # (create_test_db switched NAME to the test name, which is the same.)
    assert tables("default") == [], tables("default")
    assert "background_task" in tables("queue"), tables("queue")
    if connections["queue"].vendor == "postgresql":
        with connections["queue"].cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'background_task%%'")
            assert cursor.fetchone()[0] >= 1, "the NOTIFY trigger is missing on the queue database"


def enqueue_paths() -> dict[str, object]:
    one = tasks.record("one")
    assert one._state.db == "queue" and Task.objects.filter(task_id=one.task_id).exists()
    many = tasks.record.bulk([(f"bulk-{i}",) for i in range(40)])
    assert all(row.pk for row in many) or connections["queue"].vendor == "mysql"
    first = tasks.unique_record("u")
    second = tasks.unique_record("u")
    assert second.deduplicated and second.task_id == first.task_id
    limited = [tasks.limited(f"acct:{i}") for i in range(6)]
    rated = [tasks.rate_limited(f"r:{i}") for i in range(3)]
    later = tasks.record("later", schedule=timedelta(seconds=1))
    background_task.enqueue("tests.testapp.tasks.record", "by-name")
    # Inside a transaction on default (not the queue's database): stored at its commit.
    with transaction.atomic(using="default"):
        deferred = tasks.record("deferred")
        bulk_deferred = tasks.record.bulk([("bulk-deferred",)])
        assert deferred.pk is None
        assert not Task.objects.filter(task_id=deferred.task_id).exists()
        with background_task.queue_immediately():
            at_once = tasks.record("at-once")
        assert Task.objects.filter(task_id=at_once.task_id).exists()
    assert deferred.pk and Task.objects.filter(task_id=deferred.task_id).exists()
    assert bulk_deferred[0].pk or connections["queue"].vendor == "mysql"
    try:
        with transaction.atomic(using="default"):
            rolled_back = tasks.record("rolled-back")
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    assert not Task.objects.filter(task_id=rolled_back.task_id).exists()
    # Inside a transaction on the queue's own database: part of it.
    try:
        with transaction.atomic(using="queue"):
            inside = tasks.record("inside")
            assert Task.objects.filter(task_id=inside.task_id).exists()
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    assert not Task.objects.filter(task_id=inside.task_id).exists()
    owner = User.objects.create_user("owner")
    created = tasks.record("created", creator=owner)
    assert list(Task.objects.created_by(owner)) == [created]
    cancelled = tasks.record("cancelled", schedule=3600)
    assert cancelled.cancel()
    return {
        "records": 1 + 40 + 1 + 1 + 1 + 1 + 1 + 1 + 1,  # the eager run is not counted
        "handle": one,
        "limited": limited,
        "rated": rated,
        "later": later,
    }


def commands() -> None:
    out = io.StringIO()
    call_command("check", stdout=out)
    call_command("pause_queue", "records", stdout=out)
    assert PausedQueue.objects.filter(queue="records").exists()
    assert [paused.queue for paused in background_task.paused_queues()] == ["records"]
    call_command("task_status", stdout=out)
    assert "records" in out.getvalue()
    call_command("resume_queue", "records", stdout=out)
    assert not PausedQueue.objects.exists()
    call_command("list_schedules", stdout=out)
    call_command("requeue_tasks", "--dry-run", stdout=out)


def web() -> None:
    client = admin_pages.superuser_client("admin")
    admin_pages.visit(client)
    task = Task.objects.first()
    if task is not None:
        response = client.get(f"/admin/background_task/task/{task.pk}/change/")
        assert response.status_code == 200
    done = CompletedTask.objects.first()
    response = client.get(f"/tasks/{done.task_id}/")
    assert response.status_code == 200 and done.task_id in response.content.decode()


def worker(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "django", "process_tasks", *args],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def main() -> None:
    create_databases()
    queued = enqueue_paths()
    commands()
    with run_immediately():
        eager = tasks.record("eager")  # runs here, at once
    assert CompletedTask.objects.filter(task_id=eager.task_id).exists()

    django_task = None
    if django.VERSION >= (6, 0):
        from tests.testapp import dtasks

        django_task = dtasks.add.enqueue(2, 3)
        assert Task.objects.filter(task_id=django_task.id).exists()
        with transaction.atomic(using="default"):
            deferred_django = dtasks.add.enqueue(4, 5)
            assert not Task.objects.filter(task_id=deferred_django.id).exists()
        assert Task.objects.filter(task_id=deferred_django.id).exists()

    process = worker("--workers", "2", "--sleep", "5")
    try:
        wait_until(lambda: WorkerProcess.objects.filter(kind="worker").count() == 2)
        handle = queued["handle"]
        handle.wait(timeout=60)
        assert background_task.get_result(handle.task_id).result == "one"
        wait_until(lambda: Execution.objects.filter(task_name="record", key="later").exists())
        if django_task is not None:
            wait_until(lambda: django_task.refresh() or django_task.is_finished)
            assert django_task.return_value == 5, django_task.status
        wait_until(lambda: Execution.objects.filter(key="tick").exists())  # the schedule fired
        assert Schedule.objects.filter(name="tick").exists()
        # An idle worker sleeping 5 s between polls picks a new task up at once
        # on PostgreSQL (LISTEN/NOTIFY on the queue's database).
        time.sleep(1)
        started = time.monotonic()
        ping = tasks.record("ping")
        ping.wait(timeout=30)
        if connections["queue"].vendor == "postgresql":
            assert time.monotonic() - started < 2.5, time.monotonic() - started
        wait_until(
            lambda: (
                not Task.objects.exclude(task_name__endswith=".record", queue=None)
                .exclude(run_at__gt=timezone.now() + timedelta(minutes=5))
                .exists()
            )
        )
        expected = queued["records"] + 1  # the ping
        wait_until(
            lambda: (
                Execution.objects.filter(task_name="record").exclude(key="tick").count() >= expected
            )
        )
    except BaseException:
        process.send_signal(signal.SIGTERM)
        print(process.communicate(timeout=60)[0])
        raise
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "Traceback" not in output, output
    assert Execution.objects.filter(task_name="limited").count() == 6
    assert Execution.objects.filter(task_name="rate_limited").count() == 3
    assert Execution.objects.filter(task_name="record", key="deferred").count() == 1
    assert not Execution.objects.filter(key="rolled-back").exists()
    web()
    call_command("prune_tasks", "--older-than", "1", stdout=io.StringIO())
    with open(os.environ["ROUTED_GUARD_LOG"]) as log:
        stray = log.read()
    assert not stray, "queries about the queue reached the default database:\n" + stray
    assert tables("default") == []
    print("ok")


def drop_databases() -> None:
    for alias in ("default", "queue"):
        connection = connections[alias]
        connection.close()
        connection.creation.destroy_test_db(connection.settings_dict["NAME"], verbosity=0)


if __name__ == "__main__":
    try:
        main()
    finally:
        drop_databases()
