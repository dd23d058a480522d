"""``manage.py process_tasks`` as real subprocesses, with real signals."""

import contextlib
import os
import signal
import time

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection

from background_task import status
from background_task.models import CompletedTask, Task
from tests.conftest import subprocess_env, wait_until
from tests.testapp import tasks as fixtures
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--sleep", "-1"], "--sleep must be at least 0.0"),
        (["--sleep", "soon"], "--sleep must be a number"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--threads", "0"], "--threads must be at least 1"),
        (["--async-concurrency", "0"], "--async-concurrency must be at least 1"),
        (["--max-tasks", "0"], "--max-tasks must be at least 1"),
        (["--queues", "a,,b"], "empty queue name"),
    ],
)
def test_bad_options_are_command_errors(args, fragment):
    with pytest.raises(CommandError, match=fragment):
        call_command("process_tasks", *args)


def test_burst_runs_what_is_due_and_exits(start_worker):
    for i in range(20):
        fixtures.record(str(i))
    fixtures.record("later", schedule=3600)
    code, output = start_worker("--burst").wait()
    assert code == 0, output
    assert Execution.objects.count() == 20
    assert Task.objects.get().task_params == '[["later"], {}]'


def test_max_tasks_and_queue(start_worker):
    for i in range(5):
        fixtures.record(str(i))
    fixtures.noop()
    code, output = start_worker("--burst", "--max-tasks", "3", "--queue", "records").wait()
    assert code == 0, output
    assert Execution.objects.count() == 3
    code, output = start_worker("--burst", "--queues", "other,records").wait()
    assert Execution.objects.count() == 5
    assert Task.objects.get().task_name == "tests.testapp.tasks.noop"


def test_several_workers_run_every_task_exactly_once(start_worker):
    total = 1500
    Task.objects.bulk_create(
        [
            Task.objects.new_task("tests.testapp.tasks.record", [str(i)], queue="records")
            for i in range(total)
        ],
        batch_size=500,
    )
    workers = [start_worker("--burst", "--threads", "2") for _ in range(2)]
    workers.append(start_worker("--burst", "--workers", "2"))
    for worker in workers:
        code, output = worker.wait(timeout=240)
        assert code == 0, output
    keys = list(Execution.objects.values_list("key", flat=True))
    assert len(keys) == total and len(set(keys)) == total
    assert CompletedTask.objects.filter(status=status.DONE).count() == total
    assert not Task.objects.exists()
    assert len(set(Execution.objects.values_list("worker_pid", flat=True))) >= 3


def test_sigterm_lets_running_tasks_finish_and_leaves_nothing_locked(start_worker):
    for i in range(6):
        fixtures.sleep_for(1.5, key=str(i))
    worker = start_worker("--threads", "2", "--sleep", "0.1")
    wait_until(lambda: Execution.objects.count() >= 2)
    worker.signal(signal.SIGTERM)
    code, output = worker.wait(timeout=30)
    assert code == 0, output
    started = Execution.objects.count()
    assert Execution.objects.filter(finished_at__isnull=False).count() == started
    assert CompletedTask.objects.count() == started
    assert Task.objects.count() == 6 - started
    assert not Task.objects.exclude(status=status.WAITING).exists()
    assert not Task.objects.filter(locked_by__isnull=False).exists()


def test_grace_period_over_interrupts_and_puts_the_task_back(start_worker):
    task = fixtures.sleep_for(60)
    worker = start_worker("--sleep", "0.1", env=subprocess_env(BGTASK_SHUTDOWN_TIMEOUT="1"))
    wait_until(lambda: Execution.objects.exists())
    began = time.monotonic()
    worker.signal(signal.SIGTERM)
    code, output = worker.wait(timeout=30)
    assert code == 0, output
    assert time.monotonic() - began < 15
    row = Task.objects.get(pk=task.pk)
    assert (row.status, row.locked_by, row.attempts) == (status.WAITING, None, 1)
    assert "worker was stopped" in row.last_error


def test_grace_period_over_with_threads_settles_every_running_task(start_worker):
    first, second = fixtures.sleep_for(60, key="a"), fixtures.sleep_for(60, key="b")
    worker = start_worker(
        "--threads", "2", "--sleep", "0.1", env=subprocess_env(BGTASK_SHUTDOWN_TIMEOUT="1")
    )
    wait_until(lambda: Execution.objects.count() == 2)
    worker.signal(signal.SIGTERM)
    code, output = worker.wait(timeout=30)
    assert code == 0, output
    for task in (first, second):
        row = Task.objects.get(pk=task.pk)
        assert (row.status, row.locked_by, row.attempts) == (status.WAITING, None, 1)


def test_second_signal_stops_at_once(start_worker):
    task = fixtures.sleep_for(60)
    worker = start_worker("--sleep", "0.1")
    wait_until(lambda: Execution.objects.exists())
    worker.signal(signal.SIGINT)
    time.sleep(0.3)
    worker.signal(signal.SIGINT)
    code, output = worker.wait(timeout=15)
    assert code == 0, output
    row = Task.objects.get(pk=task.pk)
    assert row.status == status.WAITING and row.locked_by is None


def test_supervisor_restarts_a_killed_worker_and_stops_cleanly(start_worker):
    worker = start_worker(
        "--workers",
        "2",
        "--sleep",
        "0.1",
        env=subprocess_env(DJANGO_SETTINGS_MODULE="tests.logging_settings"),
    )
    fixtures.record("one")
    wait_until(lambda: Execution.objects.count() == 1)

    def children():
        import subprocess

        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(worker.process.pid)], capture_output=True, text=True
        ).stdout
        return {int(pid) for pid in out.split()}

    wait_until(lambda: len(children()) == 2)
    pids = children()
    victim = next(iter(pids))
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: len(children()) == 2 and children() != pids, timeout=20)
    fixtures.record("two")
    wait_until(lambda: Execution.objects.count() == 2)
    worker.signal(signal.SIGTERM)
    code, output = worker.wait(timeout=30)
    assert code == 0, output
    assert "restarting" in output


@pytest.mark.skipif(
    # The vendor, not get_strategy(): choosing the MySQL strategy asks the
    # server its version, and a skipif condition may not touch the database.
    "connection.vendor not in ('postgresql', 'sqlite', 'mysql')",
    reason="push or change-check wake-ups exist on PostgreSQL, SQLite and MySQL",
)
def test_an_idle_worker_wakes_for_a_new_task_before_its_sleep_ends(start_worker):
    worker = start_worker(
        "--sleep", "30", env=subprocess_env(DJANGO_SETTINGS_MODULE="tests.logging_settings")
    )
    fixtures.record("warm-up")
    wait_until(lambda: Execution.objects.count() == 1, timeout=40)
    time.sleep(0.5)  # idle now, in a 30 s wait
    began = time.monotonic()
    fixtures.record("wake")
    wait_until(lambda: Execution.objects.filter(key="wake").exists(), timeout=20)
    assert time.monotonic() - began < 10
    worker.signal(signal.SIGTERM)
    code, output = worker.wait(timeout=30)
    assert code == 0, output


def test_an_idle_worker_wakes_when_a_scheduled_task_becomes_due(start_worker):
    """A task queued for later starts when due, not up to --sleep seconds
    after (no insert happens at that moment to wake the worker)."""
    worker = start_worker(
        "--sleep", "30", env=subprocess_env(DJANGO_SETTINGS_MODULE="tests.logging_settings")
    )
    fixtures.record("warm-up")
    wait_until(lambda: Execution.objects.count() == 1, timeout=40)
    fixtures.record("later", schedule=2)
    due = time.monotonic() + 2
    wait_until(lambda: Execution.objects.filter(key="later").exists(), timeout=40)
    assert time.monotonic() - due < 10  # not the 30 s sleep
    worker.signal(signal.SIGTERM)
    code, output = worker.wait(timeout=30)
    assert code == 0, output


def test_log_std_keeps_flush_working(start_worker):
    fixtures.chatty("hello")
    worker = start_worker(
        "--burst", "--log-std", env=subprocess_env(DJANGO_SETTINGS_MODULE="tests.logging_settings")
    )
    code, output = worker.wait()
    assert code == 0, output
    assert "hello" in output and "err:hello" in output
    assert CompletedTask.objects.get().status == status.DONE


def test_discovery_error_is_a_command_error(start_worker):
    env = subprocess_env(DJANGO_SETTINGS_MODULE="tests.broken_settings")
    code, output = start_worker("--burst", env=env).wait()
    assert code != 0
    assert "Importing tests.brokenapp.tasks failed" in output


@pytest.mark.skipif(
    "connection.vendor == 'sqlite'", reason="needs a database server to cut connections"
)
def test_database_outage_is_survived(start_worker):
    for i in range(40):
        fixtures.sleep_for(0.05, key=str(i))
    worker = start_worker(
        "--sleep", "0.1", env=subprocess_env(DJANGO_SETTINGS_MODULE="tests.logging_settings")
    )
    wait_until(lambda: Execution.objects.count() >= 5)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        else:
            cursor.execute(
                "SELECT id FROM information_schema.processlist "
                "WHERE db = DATABASE() AND id <> CONNECTION_ID()"
            )
            for (thread_id,) in cursor.fetchall():
                with contextlib.suppress(DatabaseError):  # it may have gone already
                    cursor.execute(f"KILL {int(thread_id)}")
    wait_until(lambda: CompletedTask.objects.count() == 40, timeout=60)
    worker.signal(signal.SIGTERM)
    code, output = worker.wait()
    assert code == 0, output
    keys = list(Execution.objects.values_list("key", flat=True))
    assert sorted(set(keys)) == sorted(str(i) for i in range(40))
    assert "Database unavailable" in output


def test_log_file_gets_a_line_per_task_and_is_reopened_after_rotation(start_worker, tmp_path):
    log = tmp_path / "worker.log"
    first = fixtures.record("first")
    worker = start_worker("--sleep", "0.1", "--log-file", str(log))

    def end_line(task):
        lines = log.read_text().splitlines() if log.exists() else []
        return next((line for line in lines if task.task_id in line and " done in " in line), None)

    wait_until(lambda: end_line(first) is not None, timeout=20)
    line = end_line(first)
    assert "tests.testapp.tasks.record" in line and "queue=records" in line
    assert "attempt=1 done in" in line
    os.rename(log, tmp_path / "worker.log.1")  # what logrotate does
    second = fixtures.record("second")
    wait_until(lambda: Execution.objects.filter(key="second").exists(), timeout=20)
    wait_until(lambda: end_line(second) is not None, timeout=10)
    assert first.task_id not in log.read_text()
    worker.signal(signal.SIGTERM)
    assert worker.wait()[0] == 0


def test_an_unwritable_log_file_is_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match="--log-file"):
        call_command("process_tasks", "--burst", "--log-file", str(tmp_path / "no" / "such.log"))


def test_backend_option_errors_are_clear():
    import django

    if django.VERSION < (6, 0):
        with pytest.raises(CommandError, match=r"--backend needs Django 6\.0 or later"):
            call_command("process_tasks", "--burst", "--backend", "default")
    else:
        with pytest.raises(CommandError, match="--backend:"):
            call_command("process_tasks", "--burst", "--backend", "no-such-alias")


def test_a_running_worker_prunes_expired_history_off_its_claim_loop(start_worker):
    """More expired rows than one pass of the old in-loop pruning took (5,000,
    then nothing for 30 s) go at once, while the worker runs new tasks."""
    from datetime import timedelta

    from django.utils import timezone

    fixtures.noop.bulk([() for _ in range(6000)])
    code, output = start_worker("--burst").wait(timeout=120)
    assert code == 0, output
    expired_at = timezone.now() - timedelta(seconds=1)
    assert CompletedTask.objects.update(expires_at=expired_at) == 6000
    worker = start_worker("--sleep", "0.1")
    ping = fixtures.record("during-pruning")
    wait_until(lambda: not CompletedTask.objects.filter(expires_at=expired_at).exists(), timeout=10)
    wait_until(lambda: Execution.objects.filter(key="during-pruning").exists(), timeout=30)
    worker.signal()
    code, output = worker.wait()
    assert code == 0, output
    assert CompletedTask.objects.filter(task_id=ping.task_id).exists()
