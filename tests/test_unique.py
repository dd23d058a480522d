"""Unique tasks: one waiting run per key, backed by the unique constraint."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
from django.db import connection, transaction

from background_task import background, call
from background_task.core.uniqueness import (
    FINISH_PREFIX,
    START_PREFIX,
    UNTIL_FINISH,
    UNTIL_START,
    call_key,
    check_source,
    check_until,
    kept_until,
)
from background_task.models import CompletedTask, Task
from background_task.signals import task_created
from background_task.tasks import tasks
from tests.conftest import ROOT, drain, subprocess_env
from tests.testapp.models import Execution
from tests.testapp.tasks import unique_record, unique_until_finish

# -- keys (pure) ---------------------------------------------------------------------


def _key(source=None, until=UNTIL_START, args=(), kwargs=None, name="app.task"):
    return call_key(name, source, until, args, kwargs or {}, lambda: repr((args, kwargs)))


def test_a_key_is_a_prefixed_digest_that_fits_the_column():
    key = _key(args=(1,))
    assert len(key) == 64 and key.startswith(START_PREFIX)
    assert _key(args=(1,), until=UNTIL_FINISH).startswith(FINISH_PREFIX)
    assert kept_until(key) == UNTIL_START
    assert kept_until(_key(until=UNTIL_FINISH)) == UNTIL_FINISH
    assert kept_until(None) is None


def test_keys_follow_the_arguments_unless_a_key_is_given():
    assert _key(args=(1,)) == _key(args=(1,))
    assert _key(args=(1,)) != _key(args=(2,))
    assert _key("account-7", args=(1,)) == _key("account-7", args=(2,))
    assert _key("account-7") != _key("account-8")
    # Per task name: the same key of two tasks does not clash.
    assert _key("sync", name="app.a") != _key("sync", name="app.b")
    # A string key never equals an argument-derived one.
    assert _key("params:x") != _key(None)


def test_a_callable_key_gets_the_call_arguments():
    def by_account(account, **options):
        return f"account-{account}"

    assert _key(by_account, args=(7,), kwargs={"full": True}) == _key("account-7")


@pytest.mark.parametrize(
    ("check", "error", "fragment"),
    [
        (lambda: check_until("end"), ValueError, "unique_until must be 'start'"),
        (lambda: check_source(5, per_call=False), TypeError, "unique_key must be a string or a"),
        (lambda: check_source(len, per_call=True), TypeError, "unique_key must be a string, not"),
        (lambda: check_source("", per_call=True), ValueError, "must not be empty"),
        (lambda: _key(lambda: None), TypeError, "must return a string, not NoneType"),
        (lambda: _key(lambda: ""), ValueError, "unique_key must not be empty"),
    ],
)
def test_bad_unique_options_name_the_problem(check, error, fragment):
    with pytest.raises(error, match=re.escape(fragment)):
        check()


def test_the_decorator_checks_its_unique_options_at_once():
    with pytest.raises(ValueError, match="unique_until must be"):
        background(unique=True, unique_until="later")
    with pytest.raises(ValueError, match="unique=False contradicts"):
        background(unique=False, unique_key="x")
    with pytest.raises(TypeError, match="unique must be True or False"):
        background(unique="yes")


# -- queueing ------------------------------------------------------------------------

db = pytest.mark.django_db(transaction=True)


@db
def test_a_second_call_returns_the_waiting_run():
    first = unique_record("a")
    second = unique_record("a")
    other = unique_record("b")
    assert not first.deduplicated and second.deduplicated and not other.deduplicated
    assert second.pk == first.pk and second.task_id == first.task_id
    assert Task.objects.filter(task_name=unique_record.name).count() == 2


@db
def test_task_created_is_sent_for_new_rows_only():
    seen = []

    def receiver(sender, task, **kwargs):
        seen.append(task.task_id)

    task_created.connect(receiver)
    try:
        first = unique_record("a")
        unique_record("a")
    finally:
        task_created.disconnect(receiver)
    assert seen == [first.task_id]


@db
def test_per_call_options():
    plain = tasks.background(name="tests.unique.plain")(lambda n: None)
    try:
        one = plain(1, unique=True)
        assert plain(1, unique=True).pk == one.pk
        assert plain(1).pk != one.pk  # without unique=True nothing is checked
        keyed = plain(2, unique_key="shared")
        assert plain(3, unique_key="shared").pk == keyed.pk
        # unique=False on a unique task queues a second run.
        assert unique_record("x").pk != unique_record("x", unique=False).pk
        with pytest.raises(ValueError, match="unique=False contradicts"):
            plain(4, unique=False, unique_key="k")
        with pytest.raises(TypeError, match="unique_key must be a string, not"):
            plain(4, unique_key=lambda n: "k")
    finally:
        tasks._tasks.pop("tests.unique.plain")


@db
def test_a_callable_key_on_the_decorator():
    @tasks.background(name="tests.unique.per_account", unique_key=lambda account, amount: account)
    def charge(account, amount):
        pass

    try:
        first = charge("acme", 10)
        assert charge("acme", 20).pk == first.pk
        assert charge("other", 10).pk != first.pk
    finally:
        tasks._tasks.pop("tests.unique.per_account")


@db
def test_the_key_is_free_again_once_a_worker_started_the_run(clock):
    first = unique_record("a")
    drain(clock)
    assert Execution.objects.filter(task_name="unique_record").count() == 1
    second = unique_record("a")
    assert not second.deduplicated and second.pk != first.pk


@db
def test_a_claim_releases_a_start_key_and_keeps_a_finish_key(clock):
    from background_task.runtime.worker import Worker

    starting = unique_record("a")
    finishing = unique_until_finish(key="b")
    from background_task.store.claim import ClaimRequest

    worker = Worker(clock=clock, sleep=0.01)
    request = ClaimRequest("test-worker", 10, clock(), tasks.names())
    claimed = worker.strategy.claim(request)
    assert {task.pk for task in claimed} == {starting.pk, finishing.pk}
    assert Task.objects.get(pk=starting.pk).unique_key is None
    assert Task.objects.get(pk=finishing.pk).unique_key == finishing.unique_key
    # While it runs, a call of the finish-keyed task queues nothing.
    assert unique_until_finish(key="b").pk == finishing.pk
    assert not unique_record("a").deduplicated


@db
def test_a_finish_key_is_free_once_the_run_finished(clock):
    first = unique_until_finish(key="a")
    drain(clock)
    assert CompletedTask.objects.filter(task_id=first.task_id).exists()
    assert not unique_until_finish(key="a").deduplicated


@db
def test_1_2_8_single_claims_release_start_keys_too():
    first = unique_record("a")
    assert tasks.run_next_task()
    assert not unique_record("a").deduplicated
    assert Task.objects.exclude(pk=first.pk).filter(task_name=unique_record.name).count() == 1


@db
def test_cancelling_the_waiting_run_frees_its_key():
    first = unique_record("a")
    assert first.cancel()
    assert not unique_record("a").deduplicated


@db
def test_a_clash_inside_atomic_leaves_the_callers_transaction_usable():
    first = unique_record("a")
    with transaction.atomic():
        again = unique_record("a")
        assert again.pk == first.pk
        # The transaction still works after the clash...
        other = unique_record("b")
        Execution.objects.create(task_name="after-the-clash")
    assert Task.objects.filter(pk=other.pk).exists()
    assert Execution.objects.filter(task_name="after-the-clash").exists()


@db
def test_a_rolled_back_unique_call_leaves_the_key_free():
    with pytest.raises(RuntimeError), transaction.atomic():
        unique_record("a")
        raise RuntimeError
    assert not unique_record("a").deduplicated


@db
def test_remove_existing_tasks_still_replaces_the_waiting_run():
    first = unique_record("a")
    second = unique_record("a", remove_existing_tasks=True)
    assert not second.deduplicated and second.pk != first.pk
    assert list(Task.objects.filter(task_name=unique_record.name)) == [second]


@db
def test_bulk_stores_one_row_per_key_and_returns_one_handle_per_call():
    existing = unique_record("b")
    rows = unique_record.bulk([("a",), ("b",), ("a",), call(key="c")])
    assert len(rows) == 4
    assert rows[0].pk == rows[2].pk  # the same key twice in the batch: one row
    assert rows[1].pk == existing.pk and rows[1].deduplicated
    assert not rows[0].deduplicated and not rows[3].deduplicated
    assert Task.objects.filter(task_name=unique_record.name).count() == 3
    # unique=False stores every call.
    assert len({row.pk for row in unique_record.bulk([("a",), ("a",)], unique=False)}) == 2


@db
def test_bulk_with_a_bad_item_stores_nothing():
    with pytest.raises(TypeError, match="bulk\\(\\) item 1"):
        unique_record.bulk([("a",), "oops"])
    assert not Task.objects.filter(task_name=unique_record.name).exists()


@db
def test_eager_mode_runs_each_call(settings):
    settings.BACKGROUND_TASK_RUN_IMMEDIATELY = True
    unique_record("a")
    unique_record("a")
    assert Execution.objects.filter(task_name="unique_record").count() == 2


@db
def test_many_processes_and_threads_calling_at_once_leave_one_row():
    """4 processes x 8 threads call the same unique task at the same instant."""
    start_at = time.time() + 3.0  # after every process has started
    children = [
        subprocess.Popen(
            [sys.executable, "tests/unique_race.py", "8", str(start_at)],
            cwd=ROOT,
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        results.extend(out.split())
    assert len(results) == 32
    rows = list(Task.objects.filter(task_name=unique_record.name))
    assert len(rows) == 1
    assert {int(result.split(":")[0]) for result in results} == {rows[0].pk}
    assert sum(result.endswith(":0") for result in results) == 1
    connection.close()
