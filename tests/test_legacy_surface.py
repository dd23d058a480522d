"""django-background-tasks 1.2.8's public and semi-public surface, as projects use it.

Each test states what 1.2.8 did (read from its source) and checks that this
package does the same: the manager and queryset methods, the task methods
that code running tasks itself calls, the stored JSON and hash that projects
recompute, the signals' import paths, ``TaskProxy``'s attributes, and a
``DBTaskRunner`` subclass set as ``tasks._runner``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from background_task import models as legacy_models
from background_task import signals
from background_task.core.conf import app_settings
from background_task.exceptions import InvalidTaskError
from background_task.models import CompletedTask, Task
from background_task.tasks import DBTaskRunner, TaskProxy, Tasks, tasks

pytestmark = pytest.mark.django_db(transaction=True)


def stored(name: str = "legacy.task", args=(), kwargs=None, **fields) -> Task:
    task = Task.objects.new_task(name, list(args), kwargs or {})
    for key, value in fields.items():
        setattr(task, key, value)
    task.save()
    return task


# -- what is stored ---------------------------------------------------------------------


def test_params_and_hash_have_1_2_8_s_exact_layout():
    task = stored("app.tasks.send", [1, "a", [2.5, None]], {"to": "b", "at": {"x": 1}})
    params = json.dumps(([1, "a", [2.5, None]], {"to": "b", "at": {"x": 1}}), sort_keys=True)
    assert task.task_params == params  # default separators, keys sorted
    expected = hashlib.sha1(("app.tasks.send" + params).encode("utf-8")).hexdigest()
    assert task.task_hash == expected
    assert Task.objects.filter(task_params__startswith='[[1, "a"').get() == task
    assert task.params() == ([1, "a", [2.5, None]], {"at": {"x": 1}, "to": "b"})


def test_get_task_finds_the_rows_of_a_call_and_drop_task_deletes_them():
    mine = stored("app.tasks.send", [1], {"k": 2})
    stored("app.tasks.send", [2], {"k": 2})
    assert list(Task.objects.get_task("app.tasks.send", [1], {"k": 2})) == [mine]
    assert list(Task.objects.get_task("app.tasks.send", (1,), {"k": 2})) == [mine]
    Task.objects.drop_task("app.tasks.send", [1], {"k": 2})
    assert Task.objects.count() == 1


# -- the manager --------------------------------------------------------------------------


def test_unlocked_locked_and_failed():
    now = timezone.now()
    expired = now - timedelta(seconds=app_settings.MAX_RUN_TIME + 5)
    free = stored("free")
    held = stored("held", locked_by="1234", locked_at=now)
    stale = stored("stale", locked_by="1234", locked_at=expired)
    failed = stored("failed", failed_at=now)
    assert set(Task.objects.unlocked(now)) == {free, stale, failed}
    # 1.2.8 counted expired locks as locked too (an OR); see docs/migrating.md.
    assert set(Task.objects.locked(now)) == {held}
    assert list(Task.objects.failed()) == [failed]


def test_find_available_is_due_unlocked_unfailed_tasks_in_priority_order():
    now = timezone.now()
    low = stored("low", priority=1, run_at=now - timedelta(minutes=2))
    high = stored("high", priority=9, run_at=now - timedelta(minutes=1))
    older_high = stored("older_high", priority=9, run_at=now - timedelta(minutes=3))
    stored("later", run_at=now + timedelta(hours=1))
    stored("failed", failed_at=now, run_at=now - timedelta(minutes=1))
    stored("held", locked_by="99", locked_at=now, run_at=now - timedelta(minutes=1))
    other = stored("other", queue="other", run_at=now - timedelta(minutes=1))
    assert list(Task.objects.find_available()) == [older_high, high, low, other]
    assert list(Task.objects.find_available("other")) == [other]


def test_created_by_on_both_tables():
    group = Group.objects.create(name="g")
    mine = Task.objects.new_task("a", creator=group)
    mine.save()
    stored("b")
    assert list(Task.objects.created_by(group)) == [mine]
    assert list(Task.objects.all().created_by(group)) == [mine]
    completed = mine.create_completed_task()
    assert list(CompletedTask.objects.created_by(group)) == [completed]
    assert completed.creator == group


def test_completed_task_queries_failed_and_succeeded_within():
    task = stored("a")
    done = task.create_completed_task()
    failing = stored("b", failed_at=timezone.now())
    failed = failing.create_completed_task()
    assert list(CompletedTask.objects.succeeded()) == [done]
    assert list(CompletedTask.objects.failed()) == [failed]
    assert list(CompletedTask.objects.failed(within=timedelta(hours=1))) == [failed]
    old = timezone.now() - timedelta(days=2)
    CompletedTask.objects.update(run_at=old, failed_at=old)
    CompletedTask.objects.filter(pk=done.pk).update(failed_at=None)
    assert list(CompletedTask.objects.failed(within=timedelta(hours=1))) == []
    assert list(CompletedTask.objects.succeeded(within=timedelta(hours=1))) == []
    assert done.has_error() is False and failed.has_error() is False  # no last_error set


# -- the task's own methods ------------------------------------------------------------


def test_locked_by_pid_running_reads_a_bare_pid_as_1_2_8_wrote_it():
    assert stored("free").locked_by_pid_running() is None
    assert stored("mine", locked_by=str(os.getpid())).locked_by_pid_running() is True
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert stored("gone", locked_by=str(gone.pid)).locked_by_pid_running() is False


def _raised(exc: BaseException):
    try:
        raise exc
    except BaseException as caught:
        return type(caught), caught, caught.__traceback__


def test_reschedule_retries_with_1_2_8_s_backoff_and_signal():
    seen = []
    signals.task_rescheduled.connect(lambda sender, task, **kw: seen.append(task.pk), weak=False)
    try:
        task = stored("a", locked_by="1234", locked_at=timezone.now())
        before = timezone.now()
        task.reschedule(*_raised(ValueError("boom")))
    finally:
        signals.task_rescheduled.receivers.clear()
    row = Task.objects.get(pk=task.pk)
    assert row.attempts == 1 and row.locked_by is None and row.locked_at is None
    assert "ValueError: boom" in row.last_error and row.has_error()
    assert timedelta(seconds=6) <= row.run_at - before <= timedelta(seconds=8)  # 1**4 + 5
    assert row.errors[0]["exception_class_path"] == "builtins.ValueError"
    assert seen == [task.pk]


def test_reschedule_fails_for_good_at_max_attempts_or_for_an_invalid_task():
    failed = []
    signals.task_failed.connect(
        lambda sender, task_id, completed_task, **kw: failed.append(task_id), weak=False
    )
    try:
        last = stored("a", attempts=app_settings.MAX_ATTEMPTS - 1)
        last.reschedule(*_raised(ValueError("again")))
        invalid = stored("b")
        invalid.reschedule(*_raised(InvalidTaskError("never")))
    finally:
        signals.task_failed.receivers.clear()
    assert Task.objects.count() == 0
    history = {row.task_name: row for row in CompletedTask.objects.all()}
    assert history["a"].failed_at is not None and history["a"].status == "error"
    assert history["a"].attempts == app_settings.MAX_ATTEMPTS
    assert history["b"].attempts == 1 and "never" in history["b"].last_error
    assert failed == [last.pk, invalid.pk]


def test_lock_increment_attempts_and_create_repetition():
    task = stored("a", repeat=Task.HOURLY)
    locked = task.lock("7")
    assert locked is not None and locked.locked_by == "7"
    assert task.lock("8") is None  # held, not expired
    locked.increment_attempts()
    assert Task.objects.get(pk=task.pk).attempts == 1
    repetition = locked.create_repetition()
    assert repetition is not None and repetition.pk != task.pk
    assert repetition.run_at == task.run_at + timedelta(hours=1)


# -- import paths and the proxy ----------------------------------------------------------


def test_signals_are_importable_from_models_as_in_1_2_8():
    for name in ("task_failed", "task_rescheduled", "task_created", "task_successful"):
        assert getattr(legacy_models, name) is getattr(signals, name)


def test_task_proxy_name_task_function_and_now():
    registry = Tasks()

    def add(a, b):
        return a + b

    proxy = registry.background(name="legacy.add")(add)
    assert isinstance(proxy, TaskProxy)
    assert (proxy.name, proxy.task_function, proxy.now) == ("legacy.add", add, add)
    assert proxy.now(2, 3) == 5 and Task.objects.count() == 0


def test_run_task_by_name_calls_the_function():
    calls = []
    registry = Tasks()
    registry.background(name="legacy.record")(lambda *a, **k: calls.append((a, k)))
    registry.run_task("legacy.record", args=[1], kwargs={"x": 2})
    assert calls == [((1,), {"x": 2})]


# -- a DBTaskRunner subclass as tasks._runner -------------------------------------------


class CountingRunner(DBTaskRunner):
    """What projects do: log or meter around 1.2.8's runner methods."""

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []

    def schedule(self, task_name, args, kwargs, **options):
        self.calls.append("schedule")
        return super().schedule(task_name, args, kwargs, **options)

    def get_task_to_run(self, tasks, queue=None):
        self.calls.append("get_task_to_run")
        return super().get_task_to_run(tasks, queue)

    def run_task(self, tasks, task):
        self.calls.append("run_task")
        return super().run_task(tasks, task)


def test_a_runner_subclass_is_honoured_by_calls_and_run_next_task():
    registry = Tasks()
    registry._runner = runner = CountingRunner()
    ran = []
    proxy = registry.background(name="legacy.job")(lambda value: ran.append(value))
    task = proxy(5)
    assert runner.calls == ["schedule"]
    assert registry.run_next_task() is True
    assert runner.calls == ["schedule", "get_task_to_run", "run_task"]
    assert ran == [5]
    assert CompletedTask.objects.get().task_id == task.task_id
    assert registry.run_next_task() is False


def test_get_task_to_run_locks_for_the_runner_and_skips_unregistered_names():
    stored("not.registered")
    registry = Tasks()
    registry.background(name="legacy.mine")(lambda: None)
    assert registry._runner.get_task_to_run(registry) is None
    mine = stored("legacy.mine")
    locked = registry._runner.get_task_to_run(registry)
    assert locked.pk == mine.pk and locked.locked_by == registry._runner.worker_name
    assert locked.status == "running" and locked.claim_token


def test_an_expired_lock_without_a_worker_is_taken_over_and_fenced():
    registry = Tasks()
    ran = []
    registry.background(name="legacy.slow")(lambda: ran.append(1))
    task = stored("legacy.slow")
    old = task.lock("1234")
    Task.objects.filter(pk=task.pk).update(
        locked_at=timezone.now() - timedelta(seconds=app_settings.MAX_RUN_TIME + 2)
    )
    assert registry.run_next_task() is True
    assert ran == [1] and Task.objects.count() == 0
    # The old holder's claim token no longer matches anything.
    assert not Task.objects.filter(claim_token=old.claim_token).exists()


def test_the_default_registry_has_a_runner():
    assert isinstance(tasks._runner, DBTaskRunner)
    assert tasks._runner.worker_name


def test_process_tasks_goes_through_a_project_s_runner(start_worker):
    from tests.conftest import subprocess_env
    from tests.testapp import tasks as fixtures
    from tests.testapp.models import Execution

    for key in ("a", "b"):
        fixtures.record(key)
    code, output = start_worker("--burst", env=subprocess_env(BGTASK_TEST_RUNNER="1")).wait()
    assert code == 0, output
    runs = Execution.objects.filter(task_name="runner:tests.testapp.tasks.record")
    assert runs.count() == 2  # its run_task ran each task...
    assert sorted(Execution.objects.filter(task_name="record").values_list("key", flat=True)) == [
        "a",
        "b",
    ]  # ...and the tasks ran through it, once each
    assert CompletedTask.objects.filter(status="done").count() == 2
    assert Task.objects.count() == 0


def test_run_task_never_runs_a_task_a_registered_worker_holds(caplog):
    from background_task.models import WorkerProcess

    registry = Tasks()
    ran = []
    registry.background(name="legacy.held")(lambda: ran.append(1))
    now = timezone.now()
    WorkerProcess.objects.create(
        worker_id="host:1:aa", host="host", pid=1, version="x", started_at=now, heartbeat_at=now
    )
    held = stored("legacy.held").lock("host:1:aa")
    with caplog.at_level("WARNING", logger="background_task.tasks"):
        registry.run_task(held)
    assert ran == [] and Task.objects.get(pk=held.pk).locked_by == "host:1:aa"
    assert "is held by another worker; not run" in caplog.text
