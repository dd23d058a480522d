"""Self-fencing: a host that loses the database stops its tasks before another
host may take them over, so no task runs twice at once.

Two groups of real workers under different host names share a PostgreSQL or
MariaDB database: group A reaches it through a TCP relay the test cuts
(connections stay open and hang, as across a real partition), group B
directly. Each run notes its start, a tick every 50 ms and its end in a
file, never in the database. After the cut, A's workers fence themselves
(BACKGROUND_TASK_FENCE_AFTER) before B may presume them lost
(BACKGROUND_TASK_WORKER_LOST_AFTER) and run their tasks again; the runs of
every task never overlap, every task finishes once, and when the relay
heals A rejoins under new worker ids without writing anything of its old
claims.
"""

from __future__ import annotations

import itertools
import os
import signal
import time

import pytest
from django.db import connection

from background_task import status
from background_task.models import CompletedTask, WorkerProcess
from background_task.runtime.fencing import SelfFence
from tests.conftest import subprocess_env, wait_until
from tests.relay import Relay
from tests.testapp import tasks as fixtures

pytestmark = pytest.mark.django_db(transaction=True)

LOST_AFTER = 3.0
INTERVAL = 0.5  # FENCE_AFTER is derived: 3 - max(0.5, 0.6) = 2.4 s
RUN_SECONDS = 10.0
#: Worker processes of group A (B has twice as many; 2 * A tasks are queued).
#: BGTASK_PARTITION_WORKERS raises it for the larger run docs/guarantees.md quotes.
WORKERS = int(os.environ.get("BGTASK_PARTITION_WORKERS", "2"))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_fence_fires_only_past_its_deadline_and_only_when_holding_tasks():
    clock, kills, holding = Clock(), [], [False]
    fence = SelfFence(
        "w", 3.0, 4.0, holds=lambda: holding[0], clock=clock, kill=lambda: kills.append(1)
    )
    clock.now += 10
    assert not fence.check()  # silent long, but never claimed: nothing to stop
    holding[0] = True
    fence.renewed(clock.now - 1)  # a heartbeat sent a second ago went through
    assert not fence.check()
    clock.now += 2.0  # 3.0 s since that heartbeat was sent: not past the deadline yet
    assert not fence.check() and kills == []
    clock.now += 0.01
    assert fence.check() and kills == [1]
    fence.renewed(clock.now - 50)  # an older renewal never moves the deadline back
    assert fence.overdue() is not None


def runs(directory: str) -> dict[str, list[tuple[int, float, float, bool]]]:
    """Per task key: (pid, start, last sign of life, ended) of each run."""
    found: dict[str, list[tuple[int, float, float, bool]]] = {}
    for name in os.listdir(directory):
        key, pid, _ = name.split("-", 2)
        with open(os.path.join(directory, name)) as log:
            lines = [line.split() for line in log if line.strip()]
        times = [float(when) for _, when in lines]
        ended = lines[-1][0] == "end"
        found.setdefault(key, []).append((int(pid), times[0], times[-1], ended))
    return found


def group_env(host: str, port: str | None, run_log: str) -> dict[str, str]:
    env = subprocess_env(
        DJANGO_SETTINGS_MODULE="tests.logging_settings",
        BACKGROUND_TASK_HOST_NAME=host,
        BGTASK_HEARTBEAT_INTERVAL=str(INTERVAL),
        BGTASK_WORKER_LOST_AFTER=str(LOST_AFTER),
        BGTASK_SHUTDOWN_TIMEOUT="10",
        BGTASK_RUN_LOG=run_log,
    )
    if port is not None:
        env.update(DB_HOST="127.0.0.1", DB_PORT=port)
    return env


@pytest.fixture
def relay():
    """A relay to the suite's database server (PostgreSQL or MariaDB)."""
    if connection.vendor == "sqlite":
        pytest.skip("SQLite is one host's database")
    default = 5432 if connection.vendor == "postgresql" else 3306
    relay = Relay(int(connection.settings_dict["PORT"] or default))
    yield relay
    relay.close()


@pytest.mark.parametrize("round_", range(2))
def test_a_cut_off_host_stops_its_tasks_before_another_host_runs_them(
    relay, start_worker, tmp_path, round_
):
    run_log = str(tmp_path / "runs")
    os.mkdir(run_log)
    # Runs longer than WORKER_LOST_AFTER plus recovery: without fencing, A's
    # runs would still be going when B starts them again.
    queued = [fixtures.partitioned_run(f"t{index}", RUN_SECONDS) for index in range(2 * WORKERS)]
    group_a = start_worker(
        "--workers", str(WORKERS), "--sleep", "0.1",
        env=group_env("host-a", str(relay.port), run_log),
        log_path=str(tmp_path / "a.log"),
    )  # fmt: skip
    try:
        wait_until(lambda: len(os.listdir(run_log)) >= WORKERS, timeout=60)  # A runs its share
        a_ids = set(WorkerProcess.objects.filter(host="host-a").values_list("worker_id", flat=True))
        # B takes the other half and keeps as many workers free; it trusts
        # other workers' silence once its own heartbeats have flowed for LOST_AFTER.
        group_b = start_worker(
            "--workers", str(2 * WORKERS), "--sleep", "0.1",
            env=group_env("host-b", None, run_log),
            log_path=str(tmp_path / "b.log"),
        )  # fmt: skip
        wait_until(lambda: len(os.listdir(run_log)) >= 2 * WORKERS, timeout=60)
        time.sleep(LOST_AFTER + 0.5)
        relay.cut()  # the partition: A's connections hang, open
        cut_at = time.time()
        wait_until(
            lambda: CompletedTask.objects.filter(status=status.DONE).count() == len(queued),
            timeout=120,
        )
        relay.heal()
        # A rejoins under new worker ids; nothing of its old claims is written.
        wait_until(
            lambda: (
                WorkerProcess.objects.filter(host="host-a", kind="worker")
                .exclude(worker_id__in=a_ids)
                .count()
                == WORKERS
            ),
            timeout=60,
        )
        time.sleep(1.0)
    finally:
        relay.heal()
    group_a.signal(signal.SIGTERM)
    group_b.signal(signal.SIGTERM)
    code_a, output_a = group_a.wait(timeout=60)
    code_b, output_b = group_b.wait(timeout=60)
    assert code_b == 0, output_b
    assert code_a == 0, output_a
    assert "fenced itself" in output_a, output_a

    finished = list(CompletedTask.objects.all())
    assert sorted(row.task_id for row in finished) == sorted(task.task_id for task in queued)
    assert all(row.status == status.DONE for row in finished)
    by_key = runs(run_log)
    assert sorted(by_key) == sorted(f"t{index}" for index in range(2 * WORKERS))
    fenced = 0
    for key, seen in by_key.items():
        seen.sort(key=lambda run: run[1])
        assert any(ended for *_, ended in seen), (key, seen)
        for earlier, later in itertools.pairwise(seen):
            # The earlier run's last sign of life comes before the later run starts.
            assert earlier[2] < later[1], (key, seen)
            fenced += not earlier[3]
        # A run that never ended stopped after the cut (fenced), not before.
        for _pid, _start, last, ended in seen:
            if not ended:
                assert last >= cut_at - 0.2, (key, seen)
    assert fenced >= 1, by_key  # the test did cut a run short
    gaps = [
        later[1] - earlier[2]
        for seen in by_key.values()
        for earlier, later in itertools.pairwise(seen)
    ]
    print(
        f"partition ({connection.vendor}, {WORKERS}+{2 * WORKERS} workers): "
        f"tasks={len(queued)} fenced_runs={fenced} overlaps=0 "
        f"smallest gap between a fenced run and its rerun={min(gaps):.2f}s"
    )


def test_a_cut_shorter_than_the_deadline_changes_nothing(relay, start_worker, tmp_path):
    run_log = str(tmp_path / "runs")
    os.mkdir(run_log)
    queued = [fixtures.partitioned_run(f"s{index}", 4.0) for index in range(2)]
    group_a = start_worker(
        "--workers", "2", "--sleep", "0.1",
        env=group_env("host-a", str(relay.port), run_log),
        log_path=str(tmp_path / "a.log"),
    )  # fmt: skip
    try:
        wait_until(lambda: len(os.listdir(run_log)) >= 2, timeout=60)
        relay.cut()
        time.sleep(1.2)  # half of FENCE_AFTER (2.4 s)
    finally:
        relay.heal()
    wait_until(
        lambda: CompletedTask.objects.filter(status=status.DONE).count() == len(queued),
        timeout=60,
    )
    group_a.signal(signal.SIGTERM)
    code, output = group_a.wait(timeout=60)
    assert code == 0, output
    assert "fenced itself" not in output, output
    by_key = runs(run_log)
    # One run per task, each to its end: the outage went by unnoticed by the tasks.
    assert sorted(by_key) == ["s0", "s1"]
    assert all(len(seen) == 1 and seen[0][3] for seen in by_key.values()), by_key
