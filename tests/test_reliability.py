"""Hard time limits, crashes, kills and lost workers, with real processes and signals."""

from __future__ import annotations

import faulthandler
import os
import signal
import subprocess
import time

import pytest

from background_task import status
from background_task.models import CompletedTask, Task, WorkerProcess
from tests.conftest import subprocess_env, wait_until
from tests.testapp import tasks as fixtures
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)

FAST_HEARTBEATS = {
    "DJANGO_SETTINGS_MODULE": "tests.logging_settings",
    "BGTASK_HEARTBEAT_INTERVAL": "0.2",
    "BGTASK_WORKER_LOST_AFTER": "1.5",
    "BGTASK_SHUTDOWN_TIMEOUT": "2",
}


def children(pid: int) -> set[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True
    ).stdout
    return {int(child) for child in out.split()}


def stop(worker) -> str:
    worker.signal(signal.SIGTERM)
    code, output = worker.wait(timeout=30)
    assert code == 0, output
    return output


def test_the_worker_table_shows_the_supervisor_and_its_workers(start_worker):
    worker = start_worker("--workers", "2", "--threads", "3", "--queues", "a,b", "--sleep", "0.1")
    wait_until(lambda: WorkerProcess.objects.count() == 3)
    supervisor = WorkerProcess.objects.get(kind="supervisor")
    assert (supervisor.pid, supervisor.concurrency) == (worker.process.pid, 6)
    workers = WorkerProcess.objects.filter(kind="worker")
    assert {row.supervisor_id for row in workers} == {supervisor.worker_id}
    assert {row.pid for row in workers} == children(worker.process.pid)
    assert all(row.queues == ["a", "b"] and row.concurrency == 3 for row in workers)
    stop(worker)
    assert not WorkerProcess.objects.exists()  # a clean exit removes every row


def test_a_task_that_overruns_is_killed_and_retried_then_failed(start_worker):
    task = fixtures.overrun(60, key="slow")  # timeout=1, max_attempts=2
    fixtures.record("after")
    worker = start_worker("--sleep", "0.1", env=subprocess_env(**FAST_HEARTBEATS))
    wait_until(lambda: Execution.objects.filter(task_name="overrun").count() == 1)
    wait_until(lambda: Task.objects.get(pk=task.pk).attempts == 1, timeout=15)
    row = Task.objects.get(pk=task.pk)
    assert row.status == status.WAITING
    assert row.errors[0]["exception_class_path"] == "background_task.exceptions.TaskTimeout"
    assert "time limit of 1s" in row.errors[0]["message"]
    # A replacement process carries on with the rest of the queue.
    wait_until(lambda: Execution.objects.filter(key="after").exists(), timeout=15)
    Task.objects.filter(pk=task.pk).update(run_at=row.enqueued_at)  # skip the backoff
    wait_until(lambda: CompletedTask.objects.filter(task_id=task.task_id).exists(), timeout=20)
    completed = CompletedTask.objects.get(task_id=task.task_id)
    assert (completed.status, completed.attempts) == (status.ERROR, 2)
    assert "TaskTimeout" in completed.last_error
    output = stop(worker)
    assert "overran its time limit" in output
    assert Execution.objects.filter(key="slow", finished_at__isnull=False).count() == 0


def test_the_default_timeout_setting_applies_to_tasks_without_one(start_worker):
    task = fixtures.sleep_for(60)
    env = subprocess_env(BACKGROUND_TASK_DEFAULT_TIMEOUT_TEST="1", **FAST_HEARTBEATS)
    env["DJANGO_SETTINGS_MODULE"] = "tests.timeout_settings"
    worker = start_worker("--sleep", "0.1", env=env)
    wait_until(lambda: Task.objects.get(pk=task.pk).attempts == 1, timeout=15)
    assert "TaskTimeout" in Task.objects.get(pk=task.pk).last_error
    stop(worker)


def test_an_overrun_with_threads_puts_the_process_s_other_tasks_back(start_worker):
    slow = fixtures.overrun(60, key="slow")
    other = fixtures.sleep_for(30, key="other")
    worker = start_worker("--threads", "2", "--sleep", "0.1", env=subprocess_env(**FAST_HEARTBEATS))
    wait_until(lambda: Execution.objects.count() == 2)
    wait_until(lambda: Task.objects.get(pk=slow.pk).attempts == 1, timeout=15)
    assert "TaskTimeout" in Task.objects.get(pk=slow.pk).last_error
    # The other task died with the process: a lost attempt, queued again
    # (settled right after the slow one, in the same pass).
    wait_until(lambda: Task.objects.get(pk=other.pk).attempts == 1, timeout=10)
    row = Task.objects.get(pk=other.pk)
    assert (row.attempts, row.locked_by) == (1, None)
    assert "another of its tasks overran its time limit" in row.last_error
    stop(worker)


def test_a_crashing_task_is_recorded_and_its_process_replaced(start_worker):
    task = fixtures.crash()  # os._exit(1) inside the task; max_attempts=2
    fixtures.record("survivor")
    worker = start_worker("--sleep", "0.1", env=subprocess_env(**FAST_HEARTBEATS))
    wait_until(lambda: Task.objects.filter(pk=task.pk, attempts=1).exists(), timeout=15)
    row = Task.objects.get(pk=task.pk)
    assert row.status == status.WAITING and row.locked_by is None
    assert "died (exit code 1)" in row.last_error
    wait_until(lambda: Execution.objects.filter(key="survivor").exists(), timeout=20)
    output = stop(worker)
    assert "restarting in 0s" in output  # it had run tasks: no crash-loop delay


def test_a_killed_worker_s_task_is_settled_at_once_by_its_supervisor(start_worker):
    task = fixtures.sleep_for(60, key="victim")
    worker = start_worker("--sleep", "0.1", env=subprocess_env(**FAST_HEARTBEATS))
    wait_until(lambda: Execution.objects.exists())
    [child] = children(worker.process.pid)
    os.kill(child, signal.SIGKILL)
    began = time.monotonic()
    wait_until(lambda: Task.objects.get(pk=task.pk).status == status.WAITING, timeout=10)
    assert time.monotonic() - began < 5  # not after a heartbeat timeout, let alone MAX_RUN_TIME
    row = Task.objects.get(pk=task.pk)
    assert row.attempts == 1 and "WorkerLost" in row.last_error
    assert row.errors[0]["worker_id"].split(":")[1] == str(child)
    wait_until(lambda: len(children(worker.process.pid)) == 1)
    stop(worker)


def test_at_most_once_tasks_of_a_killed_worker_fail_instead(start_worker):
    task = fixtures.at_most_once(60)
    worker = start_worker("--sleep", "0.1", env=subprocess_env(**FAST_HEARTBEATS))
    wait_until(lambda: Execution.objects.exists())
    os.kill(next(iter(children(worker.process.pid))), signal.SIGKILL)
    wait_until(lambda: CompletedTask.objects.filter(task_id=task.task_id).exists(), timeout=10)
    assert CompletedTask.objects.get(task_id=task.task_id).status == status.ERROR
    stop(worker)
    assert Execution.objects.count() == 1  # never run a second time


def test_tasks_of_a_whole_lost_worker_are_recovered_by_another_within_the_threshold(
    start_worker,
):
    task = fixtures.sleep_for(60, key="orphan")
    doomed = start_worker("--sleep", "0.1", env=subprocess_env(**FAST_HEARTBEATS))
    wait_until(lambda: Execution.objects.exists())
    rescuer = start_worker(
        "--queue", "records", "--sleep", "0.1", env=subprocess_env(**FAST_HEARTBEATS)
    )
    wait_until(lambda: WorkerProcess.objects.count() == 4)
    time.sleep(2)  # the rescuer's own heartbeats must have flowed for the threshold
    doomed.kill()  # supervisor and worker both, as a lost machine would
    began = time.monotonic()
    wait_until(lambda: Task.objects.get(pk=task.pk).status == status.WAITING, timeout=15)
    assert time.monotonic() - began < 6
    row = Task.objects.get(pk=task.pk)
    assert row.attempts == 1 and "no heartbeat" in row.last_error
    wait_until(lambda: WorkerProcess.objects.count() == 2)  # the lost rows are cleaned up
    stop(rescuer)


def test_workers_of_a_killed_supervisor_finish_and_exit(start_worker):
    task = fixtures.sleep_for(1, key="finishing")
    worker = start_worker("--sleep", "0.1", env=subprocess_env(**FAST_HEARTBEATS))
    wait_until(lambda: Execution.objects.exists())
    [child] = children(worker.process.pid)
    os.kill(worker.process.pid, signal.SIGKILL)
    worker.wait(timeout=10)

    def gone() -> bool:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        return False

    wait_until(gone, timeout=15)
    assert CompletedTask.objects.get(task_id=task.task_id).status == status.DONE
    assert not WorkerProcess.objects.filter(kind="worker").exists()


def test_a_row_naming_an_unregistered_callable_is_never_imported_or_called(start_worker, tmp_path):
    marker = tmp_path / "pwned"
    Task.objects.create(
        task_name="os.system",
        task_params=f'[["touch {marker}"], {{}}]',
        task_hash="x",
        run_at=fixtures.timezone.now(),
    )
    env = subprocess_env(DJANGO_SETTINGS_MODULE="tests.logging_settings")
    env["DJANGO_SETTINGS_MODULE"] = "tests.timeout_settings"
    env["BACKGROUND_TASK_MAX_RUN_TIME_TEST"] = "1"
    time.sleep(1.2)
    code, output = start_worker("--burst", env=env).wait()
    assert code == 0, output
    assert not marker.exists()
    failed = CompletedTask.objects.get(task_name="os.system")
    assert failed.status == status.ERROR
    assert "TaskNotRegistered" in failed.last_error and "'os.system'" in failed.last_error


def test_ctrl_c_in_a_terminal_stops_gracefully(start_worker):
    """The terminal sends SIGINT to the supervisor and its workers at once; the
    supervisor forwards it too. A worker must take that as one signal."""
    task = fixtures.sleep_for(1.5, key="finishing")
    worker = start_worker("--sleep", "0.1", env=subprocess_env(**FAST_HEARTBEATS))
    wait_until(lambda: Execution.objects.exists())
    os.killpg(worker.process.pid, signal.SIGINT)  # what Ctrl-C does
    code, output = worker.wait(timeout=30)
    assert code == 0, output
    assert "stopping now" not in output
    assert CompletedTask.objects.get(task_id=task.task_id).status == status.DONE


def _report_mask(path: str) -> None:
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    with open(path, "w") as out:
        out.write(",".join(sorted(signal.Signals(s).name for s in blocked)))


def test_workers_are_forked_with_stop_signals_held_until_their_handler_is_in_place(tmp_path):
    """A SIGTERM that reaches a worker while it is being forked waits, pending,
    for the worker's own handler; the handler it inherited from the supervisor
    would otherwise swallow it and the worker would never stop."""
    from background_task.runtime.supervisor import Supervisor
    from background_task.runtime.worker import Worker

    forked = str(tmp_path / "forked")
    supervisor = Supervisor(1, lambda context: _report_mask(forked), shutdown_timeout=1)
    supervisor._start(0)
    supervisor.children[0].process.join(10)
    with open(forked) as mask:
        assert {"SIGINT", "SIGTERM"} <= set(mask.read().split(","))
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # not here

    ready, stuck = str(tmp_path / "ready"), str(tmp_path / "stuck")
    # Blocked before the fork, as the supervisor does: a thread started in the
    # child by an at-fork hook (OpenTelemetry's span processor starts one) would
    # otherwise take the signal at once, for the handler inherited from here.
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    pid = os.fork()
    if pid:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
    else:  # a forked worker: signals held, then its handler installed
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives "during the fork"
            worker = Worker()
            worker.install_signal_handlers()  # unblocks: the pending SIGTERM is handled
            _report_mask(ready)
            if worker.stopping.wait(30):  # set by the relay thread
                os._exit(0)
            with open(stuck, "w") as dump:  # where each thread was, for the failure
                faulthandler.dump_traceback(file=dump, all_threads=True)
            os._exit(3)
        except BaseException:
            os._exit(4)
    _, code = os.waitpid(pid, 0)
    where = open(stuck).read() if os.path.exists(stuck) else ""  # noqa: SIM115
    assert os.waitstatus_to_exitcode(code) == 0, where  # the worker saw the stop request
    with open(ready) as mask:
        assert "SIGTERM" not in mask.read()


def test_an_in_process_worker_or_supervisor_hands_the_signals_back(tmp_path):
    """``call_command("process_tasks", burst=True)`` in a script takes SIGTERM
    and SIGINT while it runs, then puts the script's own handlers back: Ctrl-C
    keeps working once it returns."""
    from django.core.management import call_command

    from background_task.runtime.supervisor import Supervisor

    def mine(signum, frame):
        raise AssertionError("not called here")

    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        signal.signal(signal.SIGINT, mine)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        alarm = signal.getsignal(signal.SIGALRM)
        fixtures.record("in-process")
        call_command("process_tasks", "--burst", "--sleep", "0.05")
        assert Execution.objects.filter(key="in-process").count() == 1  # it did run
        assert signal.getsignal(signal.SIGINT) is mine
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGALRM) == alarm

        ran = str(tmp_path / "ran")
        supervisor = Supervisor(1, lambda context: open(ran, "w").close(), shutdown_timeout=1)
        assert supervisor.run() == 0
        assert os.path.exists(ran)
        assert signal.getsignal(signal.SIGINT) is mine
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
