"""The worker in process, step by step, with an injected clock."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test import override_settings

from background_task import signals
from background_task.api.registry import tasks
from background_task.models import CompletedTask, Task
from background_task.runtime.execution import WorkerStopped
from background_task.runtime.worker import Worker
from background_task.store.claim import ClaimRequest
from tests.testapp import tasks as fixtures
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)


def make_worker(clock, **options):
    return Worker(clock=clock, sleep=0.01, **options)


def test_success_moves_the_task_to_history_with_its_result(clock):
    task = fixtures.add(2, 3, schedule=0)
    worker = make_worker(clock)
    assert worker.step() == 1
    assert not Task.objects.exists()
    done = CompletedTask.objects.get()
    assert done.task_id == task.task_id and done.status == "done"
    assert done.result == 5 and done.result_json == "5"
    assert done.attempts == 1 and done.failed_at is None
    assert done.worker_ids == [worker.worker_id]
    assert done.started_at is not None and done.finished_at == clock.now
    assert worker.step() == 0


def test_failure_is_rescheduled_with_backoff(clock):
    task = fixtures.fail("first", schedule=0)
    worker = make_worker(clock)
    worker.step()
    row = Task.objects.get(pk=task.pk)
    assert (row.status, row.attempts, row.locked_by, row.claim_token) == ("waiting", 1, None, None)
    assert row.run_at == clock.now + timedelta(seconds=6)
    assert "ValueError: first" in row.last_error
    assert row.errors[0]["exception_class_path"] == "builtins.ValueError"
    assert row.errors[0]["attempt"] == 1 and row.errors[0]["worker_id"] == worker.worker_id
    assert worker.step() == 0  # not due yet
    clock.advance(6)
    worker.step()
    row.refresh_from_db()
    assert row.attempts == 2 and row.run_at == clock.now + timedelta(seconds=21)
    assert len(row.errors) == 2


@override_settings(MAX_ATTEMPTS=2)
def test_attempts_exhausted_moves_to_history_as_failed(clock):
    fixtures.fail(schedule=0)
    worker = make_worker(clock)
    worker.step()
    clock.advance(10)
    worker.step()
    assert not Task.objects.exists()
    failed = CompletedTask.objects.get()
    assert failed.status == "error" and failed.failed_at == clock.now and failed.attempts == 2
    assert len(failed.errors) == 2


def test_per_task_max_attempts_wins(clock):
    task = fixtures.fail(schedule=0)
    Task.objects.filter(pk=task.pk).update(max_attempts=1)
    make_worker(clock).step()
    assert CompletedTask.objects.get().status == "error"


def test_invalid_task_error_fails_at_once(clock):
    fixtures.fail_invalid(schedule=0)
    make_worker(clock).step()
    assert CompletedTask.objects.get().failed_at is not None


def test_system_exit_inside_a_task_is_a_failure_and_the_worker_goes_on(clock):
    fixtures.exit_inside(schedule=0)
    fixtures.add(1, 1, schedule=0)
    worker = make_worker(clock)
    assert worker.step() == 1
    assert worker.step() == 1
    assert "SystemExit: 3" in Task.objects.get().last_error
    assert CompletedTask.objects.get().task_name == "tests.testapp.tasks.add"


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ("not json", "unreadable arguments"),
        ("[[1, 2, 3], {}]", "do not fit"),
        ('{"a": 1}', "must be a JSON pair"),
        ('[[1], {"b": 2}, 3]', "must be a JSON pair"),
        ("[[1], [2]]", "must be a JSON pair"),
    ],
)
def test_corrupt_rows_fail_with_a_clear_error_and_others_run(clock, params, fragment):
    bad = fixtures.add(1, 2, schedule=0)
    Task.objects.filter(pk=bad.pk).update(task_params=params)
    fixtures.record("ok", schedule=0)
    worker = make_worker(clock)
    worker.step()
    worker.step()
    failed = CompletedTask.objects.get(task_id=bad.task_id)
    assert failed.status == "error" and fragment in failed.last_error
    assert Execution.objects.get().key == "ok"


def test_a_type_error_of_the_task_s_own_code_is_retried_like_any_error(clock):
    task = fixtures.mistyped(2, schedule=0)
    make_worker(clock).step()
    row = Task.objects.get(pk=task.pk)  # still queued: not a bad row
    assert row.attempts == 1 and "TypeError" in row.last_error
    assert "do not fit" not in row.last_error


def claim_one(worker, clock):
    [claimed] = worker.strategy.claim(ClaimRequest(worker.worker_id, 1, clock.now, tasks.names()))
    return claimed


def test_a_worker_that_lost_its_claim_changes_nothing(clock):
    task = fixtures.add(1, 2, schedule=0)
    worker = make_worker(clock)
    claimed = claim_one(worker, clock)
    # Another worker takes the task over (as after an expired claim).
    Task.objects.filter(pk=task.pk).update(claim_token="someone-else", locked_by="other")
    outcome = worker.executor.execute(claimed)
    assert outcome.result == "lost"
    assert not CompletedTask.objects.exists()
    assert Task.objects.get().locked_by == "other"


def test_repeat_chain_keeps_phase_and_survives_final_failure(clock):
    ok = fixtures.noop(schedule=0, repeat=Task.HOURLY)
    worker = make_worker(clock)
    worker.step()
    successor = Task.objects.get()
    assert successor.run_at == ok.run_at + timedelta(hours=1)
    assert successor.scheduled_at == successor.run_at
    successor.delete()
    failing = fixtures.fail_invalid(schedule=0, repeat=Task.HOURLY)
    worker.step()
    assert Task.objects.get().run_at == failing.run_at + timedelta(hours=1)


def test_a_calendar_repeat_runs_again_a_month_later(clock):
    from dateutil.relativedelta import relativedelta
    from django.utils import timezone

    first = fixtures.noop(schedule=0, repeat=relativedelta(months=1))
    make_worker(clock).step()
    successor = Task.objects.get()
    assert successor.repeat_rule == '{"months": 1}'
    local = timezone.localtime(first.run_at)
    assert timezone.localtime(successor.run_at) == local + relativedelta(months=1)


def test_repeat_until_is_never_passed(clock):
    fixtures.noop(schedule=0, repeat=Task.HOURLY, repeat_until=clock.now + timedelta(minutes=30))
    make_worker(clock).step()
    assert not Task.objects.exists()


def test_unknown_names_do_not_block_and_fail_after_max_run_time(clock):
    for _ in range(3):
        Task.objects.new_task("not.registered", priority=100).save()
    fixtures.record("known", schedule=0)
    worker = make_worker(clock)
    assert worker.step() == 1
    assert Execution.objects.count() == 1
    assert Task.objects.filter(task_name="not.registered").count() == 3
    clock.advance(3601)
    worker.maintenance(clock.now)
    failed = CompletedTask.objects.filter(task_name="not.registered")
    assert failed.count() == 3
    assert all(
        row.status == "error" and "does not have it registered" in row.last_error for row in failed
    )


def test_a_worker_with_no_tasks_registered_fails_nothing(clock):
    from background_task.api.registry import Tasks

    fixtures.noop(schedule=0)
    worker = Worker(clock=clock, registry=Tasks())
    clock.advance(7200)
    worker.maintenance(clock.now)
    assert worker.step() == 0
    assert Task.objects.get().status == "waiting"
    assert not CompletedTask.objects.exists()


def test_an_idle_worker_reconnects_before_it_waits_not_after(clock):
    """The claim after a wake-up must not pay for connecting (or, on
    PostgreSQL, for preparing the claim statement)."""
    worker = make_worker(clock)
    assert worker.step() == 0
    connection.close()  # as CONN_MAX_AGE closes it between steps
    try:
        worker._idle()
        assert connection.connection is not None
        if connection.vendor == "postgresql" and worker.strategy.prepared.enabled:
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM pg_prepared_statements")
                assert cursor.fetchone()[0] >= 1
        fixtures.noop(schedule=0)
        assert worker.step() == 1
    finally:
        worker.strategy.close()


def test_expired_claims_are_put_back(clock):
    task = fixtures.noop(schedule=0)
    task.lock("dead-worker")
    worker = make_worker(clock)
    worker.maintenance(clock.now)
    assert Task.objects.get().locked_by == "dead-worker"
    clock.advance(3601)
    worker.maintenance(clock.now)
    row = Task.objects.get()
    assert (row.status, row.locked_by, row.attempts) == ("waiting", None, 1)
    assert "expired" in row.last_error


def test_queues_and_priority_order(clock):
    fixtures.record("low", schedule=0, queue="a", priority=1)
    fixtures.record("high", schedule=0, queue="a", priority=9)
    fixtures.record("other", schedule=0, queue="b", priority=50)
    worker = make_worker(clock, queues=["a"])
    worker.step()
    worker.step()
    assert worker.step() == 0
    assert list(Execution.objects.order_by("id").values_list("key", flat=True)) == ["high", "low"]


def test_signals_in_1_2_8_order(clock):
    events = []

    def on(name):
        def receiver(sender, **kwargs):
            events.append(name)

        return receiver

    receivers = {
        name: on(name)
        for name in (
            "task_started",
            "task_error",
            "task_rescheduled",
            "task_failed",
            "task_successful",
            "task_finished",
        )
    }
    for name, receiver in receivers.items():
        getattr(signals, name).connect(receiver)
    try:
        fixtures.noop(schedule=0)
        worker = make_worker(clock)
        worker.step()
        assert events == ["task_started", "task_successful", "task_finished"]
        events.clear()
        fixtures.fail(schedule=0)
        worker.step()
        assert events == ["task_started", "task_error", "task_rescheduled", "task_finished"]
        events.clear()
        fixtures.fail_invalid(schedule=0)
        worker.step()
        assert events == ["task_started", "task_error", "task_failed", "task_finished"]
    finally:
        for name, receiver in receivers.items():
            getattr(signals, name).disconnect(receiver)


def test_a_raising_signal_receiver_never_changes_the_outcome(clock):
    def explode(**kwargs):
        raise RuntimeError("receiver bug")

    signals.task_successful.connect(explode)
    try:
        fixtures.noop(schedule=0)
        make_worker(clock).step()
    finally:
        signals.task_successful.disconnect(explode)
    assert CompletedTask.objects.get().status == "done"
    assert not Task.objects.exists()


def test_worker_stopped_inside_a_task_counts_an_attempt(clock):
    task = fixtures.noop(schedule=0)
    worker = make_worker(clock)
    claimed = claim_one(worker, clock)
    original = tasks.get(task.task_name).task_function

    def interrupted():
        raise WorkerStopped("stop")

    tasks.get(task.task_name).task_function = interrupted
    try:
        with pytest.raises(WorkerStopped):
            worker.executor.execute(claimed)
    finally:
        tasks.get(task.task_name).task_function = original
    row = Task.objects.get()
    assert row.status == "waiting" and row.attempts == 1


def test_release_puts_unstarted_tasks_back(clock):
    fixtures.noop(schedule=0)
    worker = make_worker(clock)
    claimed = claim_one(worker, clock)
    assert worker.executor.release(claimed)
    row = Task.objects.get()
    assert (row.status, row.locked_by, row.started_at, row.attempts) == ("waiting", None, None, 0)


def test_legacy_run_next_task_and_run_task():
    fixtures.record("legacy")
    assert tasks.run_next_task() is True
    assert tasks.run_next_task() is False
    task = fixtures.record("by-row", schedule=3600)
    tasks.run_task(task)
    assert CompletedTask.objects.filter(task_id=task.task_id, status="done").exists()
    tasks.run_task("tests.testapp.tasks.record", ["by-name"])
    assert set(Execution.objects.values_list("key", flat=True)) == {"legacy", "by-row", "by-name"}


def test_threads_run_tasks_concurrently(clock):
    for i in range(6):
        fixtures.record(str(i), schedule=0)
    worker = Worker(clock=clock, sleep=0.01, threads=3, burst=True)
    worker.run()
    assert Execution.objects.count() == 6
    assert CompletedTask.objects.count() == 6


def test_pool_threads_leave_recording_their_successes_to_the_worker_s_thread(clock):
    """Threads that each committed their own success contended for the write lock."""
    import re
    import threading

    from django.db.backends.signals import connection_created

    deletes: list[int] = []  # the thread of each DELETE of claimed task rows

    def watch(execute, sql, params, many, context):
        if re.match(r"DELETE FROM [`\"]?background_task[`\"]? ", sql):
            deletes.append(threading.get_ident())
        return execute(sql, params, many, context)

    def on_connect(sender, connection, **kwargs):
        connection.execute_wrappers.append(watch)

    connection.execute_wrappers.append(watch)
    connection_created.connect(on_connect)
    try:
        for i in range(9):
            fixtures.record(str(i), schedule=0)
        Worker(clock=clock, sleep=0.01, threads=3, burst=True).run()
    finally:
        connection_created.disconnect(on_connect)
        # (a reconnect of this thread's connection may have added it again)
        connection.execute_wrappers[:] = [w for w in connection.execute_wrappers if w is not watch]
    assert CompletedTask.objects.filter(status="done").count() == 9
    assert not Task.objects.exists()
    assert deletes and set(deletes) == {threading.get_ident()}


def test_successes_of_a_batch_are_recorded_together(clock, django_assert_max_num_queries):
    for i in range(10):
        fixtures.record(str(i), schedule=0, repeat=Task.HOURLY if i == 0 else None)
    worker = make_worker(clock)
    worker._mean_duration = 0.001  # known fast tasks: claim them in one batch
    # The first step's upkeep (a few statements) + the claim (one statement
    # on SQLite and PostgreSQL; seven on MariaDB: one per waiting priority
    # and one more to learn which priorities hold due tasks, then a
    # transaction that locks and marks them, and a read of the rows) + 20 by
    # the tasks themselves (an Execution insert and update each) + one flush
    # transaction of a few statements + the read of the paused queues and
    # the first maintenance's looks for concurrency slots and blocked tasks.
    # Recording each success on its own needs 50 or more.
    with django_assert_max_num_queries(42):
        assert worker.step() == 10
    done = CompletedTask.objects.filter(status="done")
    assert done.count() == 10
    assert all(row.worker_ids == [worker.worker_id] and row.attempts == 1 for row in done)
    assert Task.objects.get().repeat == Task.HOURLY  # the repetition of the first
    assert Execution.objects.count() == 10


def test_a_lost_claim_in_a_batch_is_discarded_and_the_rest_recorded(clock):
    tasks_ = [fixtures.record(str(i), schedule=0) for i in range(3)]
    worker = make_worker(clock)
    batch = worker.strategy.claim(ClaimRequest(worker.worker_id, 3, clock.now, tasks.names()))
    for task in batch:
        worker.executor.execute(task, defer_success=True)
    assert len(worker.executor.pending) == 3
    # Another worker took the second task over meanwhile.
    Task.objects.filter(pk=tasks_[1].pk).update(claim_token="other", locked_by="other")
    worker.executor.flush()
    assert worker.executor.pending == []
    assert set(CompletedTask.objects.values_list("task_id", flat=True)) == {
        tasks_[0].task_id,
        tasks_[2].task_id,
    }
    assert Task.objects.get().locked_by == "other"


def test_successes_are_not_deferred_while_someone_listens(clock):
    def receiver(**kwargs):
        pass

    signals.task_finished.connect(receiver)
    try:
        fixtures.noop(schedule=0)
        worker = make_worker(clock)
        [claimed] = worker.strategy.claim(
            ClaimRequest(worker.worker_id, 1, clock.now, tasks.names())
        )
        worker.executor.execute(claimed, defer_success=True)
        assert worker.executor.pending == []
        assert CompletedTask.objects.count() == 1
    finally:
        signals.task_finished.disconnect(receiver)


def test_a_database_error_while_recording_a_batch_never_stops_the_worker(clock):
    first, second = fixtures.record("a", schedule=0), fixtures.record("b", schedule=0)
    worker = make_worker(clock)
    batch = worker.strategy.claim(ClaimRequest(worker.worker_id, 2, clock.now, tasks.names()))
    for task in batch:
        worker.executor.execute(task, defer_success=True)
    # A history row already holds the first task's id: its insert must fail.
    CompletedTask.objects.create(
        task_id=first.task_id,
        task_name="x",
        task_params="[[], {}]",
        task_hash="h",
        run_at=clock.now,
    )
    worker.executor.flush()
    assert CompletedTask.objects.filter(task_id=second.task_id, status="done").exists()
    assert Task.objects.get().pk == first.pk  # left claimed; its claim will expire
