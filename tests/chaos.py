"""The chaos suite's machinery: worker groups to kill, and the checks that nothing was lost.

Every chaos task records each execution (worker pid, start, end) in the
Execution table. A worker killed mid-task leaves an execution without an
end; its end is the moment the test saw the process die. The checks:

- every task completed (a DONE history row each, nothing left queued or locked);
- no two executions of one task overlapped in time;
- every execution that was not a task's last was cut short by a kill
  (or finished its code just before the kill, before recording it);
- every unfinished execution belongs to a killed process.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import re
import signal
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from background_task import status
from background_task.models import CompletedTask, Task
from tests.testapp import tasks as fixtures
from tests.testapp.models import Execution

QUEUE = "chaos"
#: The environment of the chaos suites' workers: fast heartbeats, quick recovery.
CHAOS_ENV = {
    "DJANGO_SETTINGS_MODULE": "tests.logging_settings",
    "BGTASK_LOG_LEVEL": "WARNING",
    "BGTASK_HEARTBEAT_INTERVAL": "0.2",
    "BGTASK_WORKER_LOST_AFTER": "1.5",
    "BGTASK_SHUTDOWN_TIMEOUT": "10",
    "BGTASK_LOG_CREATED": "1",  # log lines start with their time (Chaos.stopped_at)
}

UNIQUE_QUEUE = "chaos-unique"  # unique tasks called while workers die
IN_FLIGHT = timedelta(seconds=1)  # how long before a crash a write may still be in flight


def children(pid: int) -> set[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True
    ).stdout
    return {int(child) for child in out.split()}


def dead(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie counts: it runs no code)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:  # gone: no /proc entry, or reaped while it was read (ESRCH)
        return True


def group_members(pgid: int) -> set[int]:
    """Every process of the process group ``pgid`` (a worker group: the
    supervisor, started in a session of its own, and the workers it forked)."""
    out = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True).stdout
    return {int(pid) for pid in out.split()}


def wait_dead(pids: set[int], timeout: float = 10.0) -> datetime:
    deadline = time.monotonic() + timeout
    while not all(dead(pid) for pid in pids):
        if time.monotonic() > deadline:
            raise AssertionError(f"processes {pids} did not die")
        time.sleep(0.001)
    return datetime.now(UTC)


#: Half the chaos tasks share five concurrency keys, at most LIMIT runs each at once.
LIMIT = 2


def limit_key(index: int) -> str | None:
    """The concurrency key of chaos task ``index`` (None: it has no limit)."""
    return f"chaos-{index % 5}" if index % 2 == 0 else None


def enqueue(total: int, rng: random.Random, using: str = "default") -> None:
    """Queue ``total`` chaos tasks of 5-45 ms each, half of them with a
    concurrency limit (see :func:`limit_key`)."""
    rows = []
    for i in range(total):
        row = Task.objects.new_task(
            fixtures.chaos_step.name, [str(i), rng.randint(5, 45)], queue=QUEUE
        )
        key = limit_key(i)
        if key is not None:
            row.concurrency_key, row.concurrency_limit = key, LIMIT
        rows.append(row)
    Task.objects.using(using).bulk_create(rows, batch_size=500)


@dataclass
class Chaos:
    """Worker groups (a supervisor and its workers each) and what was done to them."""

    start_worker: object
    env: dict[str, str]
    rng: random.Random
    log_dir: str
    groups: list = field(default_factory=list)
    killed_at: dict[int, datetime] = field(default_factory=dict)
    kills: int = 0
    outputs: list[str] = field(default_factory=list)
    queues: str = f"{QUEUE},{UNIQUE_QUEUE}"  # what the groups' workers run

    def start_group(self) -> None:
        self.groups.append(
            self.start_worker(  # type: ignore[operator]
                "--workers",
                "2",
                "--threads",
                "2",
                "--queues",
                self.queues,
                "--sleep",
                "0.1",
                env=self.env,
                log_path=os.path.join(self.log_dir, f"group-{time.time_ns()}.log"),
            )
        )

    def kill_a_worker(self) -> None:
        """SIGKILL one worker process; its supervisor settles and replaces it."""
        group = self.rng.choice(self.groups)
        pids = sorted(children(group.process.pid))
        if not pids:
            return
        pid = self.rng.choice(pids)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self.killed_at[pid] = wait_dead({pid})
        self.kills += 1
        # Until its supervisor has reaped it, a stop signal could reach the
        # supervisor first, which would then report the death as its exit code.
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.005)

    def kill_a_group(self) -> None:
        """SIGKILL a supervisor and its workers at once, as a lost machine would
        vanish; other workers recover its tasks once its heartbeats are stale."""
        group = self.groups.pop(self.rng.randrange(len(self.groups)))
        # Freeze the group first, so that a worker the supervisor forks while
        # the test lists the group's processes cannot die unrecorded.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group.process.pid, signal.SIGSTOP)
        pids = group_members(group.process.pid) | {group.process.pid}
        self.outputs.append(group.kill())
        when = wait_dead(pids)
        for pid in pids:
            self.killed_at[pid] = when
        self.kills += len(pids)
        self.start_group()

    def terminate_a_group(self) -> None:
        """SIGTERM a group mid-batch: it must finish what runs, put back the rest, exit 0."""
        group = self.groups.pop(self.rng.randrange(len(self.groups)))
        self._handles_signals(group)
        group.signal(signal.SIGTERM)
        code, output = group.wait(timeout=60)
        self.outputs.append(output)
        assert code == 0, f"exit code {code}:\n{output}"
        self.start_group()

    @staticmethod
    def _handles_signals(group: Any) -> None:
        """Wait until ``group``'s supervisor has forked a worker, which it does
        after installing its signal handlers: one just started (replacing a
        killed group) would otherwise die of SIGTERM's default action, without
        a word, exit code -15."""
        deadline = time.monotonic() + 30
        while not children(group.process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        for group in self.groups:
            self._handles_signals(group)
            group.signal(signal.SIGTERM)
        for group in self.groups:
            code, output = group.wait(timeout=60)
            self.outputs.append(output)
            assert code == 0, output

    def stopped_at(self) -> dict[int, datetime]:
        """Every worker process killed mid-run, with a moment after its runs ended:
        those this test killed, and those that fenced themselves (a worker
        whose heartbeats stall for FENCE_AFTER kills its own process, which a
        loaded machine can bring about outside the database's outages too).

        A fenced worker's moment is when its supervisor logged its exit, a
        bound after its death (the log lines carry their time: BGTASK_LOG_CREATED).
        """
        fenced = {
            int(match.group(1))
            for output in self.outputs
            for match in re.finditer(r"Worker [^\s:]+:(\d+):\w+ fenced itself", output)
        }
        exited: dict[int, datetime] = {}
        for output in self.outputs:
            for match in re.finditer(
                r"^(\d+\.\d+) Worker process \d+ \(pid (\d+)\) exited", output, re.M
            ):
                exited[int(match.group(2))] = datetime.fromtimestamp(float(match.group(1)), UTC)
        unseen = fenced - set(exited) - set(self.killed_at)
        assert not unseen, f"workers {unseen} fenced themselves but their exit was not logged"
        return {**{pid: exited[pid] for pid in fenced if pid in exited}, **self.killed_at}

    def presumed_lost(self) -> set[int]:
        """Pids of the workers that others judged lost by their stale heartbeats."""
        return {
            int(match.group(1))
            for output in self.outputs
            for match in re.finditer(r"Worker [^\s:]+:(\d+):\w+ was lost", output)
        }

    @contextlib.contextmanager
    def explained(self, seed: int) -> Iterator[None]:
        """Run the final checks, then check that no live worker was presumed
        lost; a failure carries the seed and what the workers logged."""
        try:
            yield
            alive = self.presumed_lost() - set(self.stopped_at())
            assert not alive, f"live workers {alive} were presumed lost"
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\nseed {seed}; the workers logged:\n{self.warnings()}"
            ) from exc

    def warnings(self) -> str:
        """What the workers logged about lost, dead and restarted workers, with
        every traceback in full, and where the complete logs are."""
        keep = ("lost", "presumed", "died", "exited with", "killing", "Giving up", "stopping")
        lines: list[str] = []
        in_traceback = False
        for output in self.outputs:
            for line in output.splitlines():
                if line.startswith("Traceback"):
                    in_traceback = True
                if in_traceback or any(word in line for word in keep):
                    lines.append(line)
                if in_traceback and line and not line[0].isspace() and ":" in line:
                    in_traceback = not line.split(":", 1)[0].endswith(
                        ("Error", "Exception", "Lost")
                    )
        if len(lines) > 400:
            lines = [*lines[:200], "...", *lines[-200:]]
        return "\n".join([*lines, f"(complete worker logs in {self.log_dir})"])


def done(using: str = "default") -> int:
    return CompletedTask.objects.using(using).filter(queue=QUEUE, status=status.DONE).count()


def check(
    total: int,
    killed_at: dict[int, datetime],
    using: str = "default",
    outages: Sequence[tuple[datetime, datetime]] = (),
) -> dict[str, int]:
    """Assert the chaos invariants; return the figures for the summary line.

    ``outages`` are the (down, up) times of database restarts: a run that
    was cut off by one (its code could not write its end, or failed on the
    lost connection and was retried) ended by the time the database was up.
    A run's end time is taken just before it is written, and a write in
    flight when the server dies may be committed while the client sees an
    error (the task then fails and is retried), so an end up to
    IN_FLIGHT before the crash still counts as cut off.
    """

    def cut_by_outage(execution: Execution) -> datetime | None:
        for down, up in outages:
            ended = execution.finished_at
            if execution.started_at <= up and (ended is None or ended >= down - IN_FLIGHT):
                return up
        return None

    def end_of(execution: Execution) -> datetime | None:
        if execution.worker_pid in killed_at:
            return execution.finished_at or killed_at[execution.worker_pid]
        return execution.finished_at or cut_by_outage(execution)

    completed = list(
        CompletedTask.objects.using(using).filter(queue=QUEUE).values_list("status", "task_params")
    )
    assert {state for state, _ in completed} == {status.DONE}, "a chaos task failed"
    assert len(completed) == total, f"{total - len(completed)} task(s) lost"
    assert not Task.objects.using(using).filter(queue=QUEUE).exists(), "tasks left queued"

    runs: dict[str, list[Execution]] = defaultdict(list)
    for execution in Execution.objects.using(using).filter(task_name="chaos"):
        runs[execution.key].append(execution)
    assert len(runs) == total, f"{total - len(runs)} task(s) never ran"
    overlaps = reruns = 0
    for key, executions in runs.items():
        executions.sort(key=lambda e: e.started_at)
        for execution in executions:
            assert end_of(execution) is not None, (
                f"task {key}: an execution by pid {execution.worker_pid}, which was never "
                f"killed nor cut off by an outage, did not finish"
            )
        for earlier, later in itertools.pairwise(executions):
            reruns += 1
            assert earlier.worker_pid in killed_at or cut_by_outage(earlier), (
                f"task {key} ran again after a run by pid {earlier.worker_pid}, "
                f"which was neither killed nor cut off by an outage"
            )
            end = end_of(earlier)
            assert end is not None
            if end > later.started_at:
                overlaps += 1
        assert executions[-1].finished_at is not None, f"task {key}: its last run did not finish"
    assert overlaps == 0, f"{overlaps} overlapping execution(s)"
    figures = {"tasks": total, "re-executions": reruns, "overlaps": overlaps, "lost": 0}
    if not outages:
        # A killed run held its slot until its worker was found lost, so even
        # counted up to the kill, no key ever ran more than LIMIT at once.
        peaks = limit_peaks(runs, end_of)
        assert max(peaks.values()) <= LIMIT, f"concurrency limit exceeded: {peaks}"
        figures["limited peak"] = max(peaks.values())
    return figures


@dataclass
class UniqueCalls:
    """Calls of a unique task during the chaos, and the handles they returned."""

    keys: int = 3
    calls: int = 0
    deduplicated: int = 0
    ids: set[str] = field(default_factory=set)

    def call_all(self) -> None:
        """Call each key twice in a row: the second call nearly always finds
        the first's task still waiting."""
        for key in range(self.keys):
            for _ in range(2):
                task = fixtures.chaos_unique(f"u{key}", priority=10)  # ahead of the backlog
                self.calls += 1
                self.deduplicated += bool(task.deduplicated)
                self.ids.add(task.task_id)

    def finished(self, using: str = "default") -> bool:
        """True once every task the calls queued has finished (one a killed
        worker held runs again after its retry delay)."""
        completed = CompletedTask.objects.using(using).filter(task_id__in=list(self.ids))
        return completed.count() == len(self.ids)

    def check(self, using: str = "default") -> dict[str, int]:
        """Calls found their key's waiting task (and queued none), every task
        a call queued ran to its end, and nothing is left behind."""
        assert self.calls, "no unique call was made"
        assert self.deduplicated, "no call found its key's task waiting"
        assert len(self.ids) == self.calls - self.deduplicated
        finished = CompletedTask.objects.using(using).filter(queue=UNIQUE_QUEUE)
        states = dict(finished.values_list("task_id", "status"))
        assert set(states) == self.ids, f"{len(self.ids - set(states))} unique task(s) lost"
        assert set(states.values()) == {status.DONE}, "a unique task failed"
        assert not Task.objects.using(using).filter(queue=UNIQUE_QUEUE).exists()
        return {"unique calls": self.calls, "deduplicated": self.deduplicated}


def limit_peaks(
    runs: dict[str, list[Execution]], end_of: Callable[[Execution], datetime | None]
) -> dict[str, int]:
    """Per concurrency key, the most executions that ran at once."""
    events: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    for key, executions in runs.items():
        limit = limit_key(int(key))
        if limit is None:
            continue
        for execution in executions:
            end = end_of(execution)
            assert end is not None
            events[limit] += [(execution.started_at, 1), (end, -1)]
    peaks = {}
    for limit, changes in events.items():
        running = peak = 0
        for _, change in sorted(changes):  # an end before a start at the same instant
            running += change
            peak = max(peak, running)
        peaks[limit] = peak
    return peaks


def drive(
    chaos: Chaos,
    total: int,
    *,
    timeout: float,
    count_done: Callable[[], int] = done,
    extra: Callable[[], None] | None = None,
    each: Callable[[], None] | None = None,
) -> None:
    """Kill workers at random moments until 80% of the tasks are done, with one
    group killed whole, one terminated and ``extra`` done once (``each`` at
    every turn), then let the rest drain."""
    deadline = time.monotonic() + timeout
    group_killed = terminated = False
    finished = 0
    while finished < total:
        assert time.monotonic() < deadline, f"only {finished} of {total} done in {timeout}s"
        try:
            finished = count_done()
        except Exception:  # the database is restarting
            time.sleep(0.2)
            continue
        progress = finished / total
        if each is not None and progress < 0.8:
            each()
        if progress < 0.8:
            if progress > 0.2 and not group_killed:
                chaos.kill_a_group()
                group_killed = True
            elif progress > 0.4 and not terminated:
                chaos.terminate_a_group()
                terminated = True
            elif extra is not None and (progress > 0.5 or terminated):
                extra()
                extra = None
            else:
                chaos.kill_a_worker()
        time.sleep(chaos.rng.uniform(0.2, 0.6))
