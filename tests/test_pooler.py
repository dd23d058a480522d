"""Real workers and a real web process behind PgBouncer in transaction mode.

PgBouncer (tests/pooler.py) sits between every process and PostgreSQL, and
is restarted while the workers run. The project marks the database as
pooled the way Django asks for it (DISABLE_SERVER_SIDE_CURSORS), so workers
either poll every POLL_INTERVAL when idle or LISTEN on the direct
connection BACKGROUND_TASK_LISTEN_DATABASE names, and say which.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from django.db import connection
from django.utils import timezone

from background_task.models import CompletedTask, Task, WorkerProcess
from tests.conftest import ROOT, subprocess_env, wait_until
from tests.pooler import PgBouncer, executable
from tests.run_suite import CI
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def bouncer():
    if connection.vendor != "postgresql":
        pytest.skip("PgBouncer pools PostgreSQL connections")
    if executable() is None:
        if CI:
            pytest.fail("pgbouncer is not installed (.ci/run installs Debian's package)")
        pytest.skip("pgbouncer is not installed")
    pooler = PgBouncer()
    pooler.start()
    yield pooler
    pooler.cleanup()


def pooled_env(pooler: PgBouncer, listen: str) -> dict[str, str]:
    env = subprocess_env(
        DJANGO_SETTINGS_MODULE="tests.schedule_settings",  # a schedule that fires every second
        DB_PORT=str(pooler.port),
        DB_POOLED="1",
        BGTASK_LISTEN_DATABASE=listen,
        BGTASK_HEARTBEAT_INTERVAL="0.5",
        BGTASK_WORKER_LOST_AFTER="5",
    )
    env.pop("DB_PREPARED", None)  # psycopg's own prepared statements need a session
    return env


def client(env: dict[str, str], command: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "tests/pooled_client.py", command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    ids: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return ids


@pytest.mark.parametrize("listen", ["", "direct"], ids=["polling", "listen-direct"])
def test_workers_and_enqueue_work_through_pgbouncer_and_its_restart(
    bouncer, listen, start_worker, tmp_path
):
    env = pooled_env(bouncer, listen)
    log = str(tmp_path / "worker.log")
    worker = start_worker("--workers", "2", "--sleep", "30", env=env, log_path=log)
    wait_until(lambda: WorkerProcess.objects.filter(kind="worker").count() == 2, timeout=60)
    queued = client(env, "enqueue")
    assert len(queued) == 231
    wait_until(lambda: CompletedTask.objects.filter(task_id__in=queued).count() >= 60, timeout=60)
    restarted_at = timezone.now()
    bouncer.restart(down_for=1.0)  # every pooled connection breaks
    wait_until(
        lambda: CompletedTask.objects.filter(task_id__in=queued).count() == len(queued),
        timeout=120,
    )
    # Heartbeats and the schedule went on after the restart.
    wait_until(
        lambda: (
            WorkerProcess.objects.filter(kind="worker", heartbeat_at__gt=restarted_at).count() == 2
        ),
        timeout=30,
    )
    wait_until(
        lambda: Execution.objects.filter(key="tick", started_at__gt=restarted_at).exists(),
        timeout=30,
    )
    # An idle worker (--sleep 30) picks a new task up within a second.
    time.sleep(1.5)
    started = time.monotonic()
    (ping,) = client(env, "ping")
    wait_until(lambda: CompletedTask.objects.filter(task_id=ping).exists(), timeout=30)
    picked_up = time.monotonic() - started
    worker.signal()
    code, output = worker.wait(timeout=60)
    assert code == 0, output
    assert picked_up < 5.0, (picked_up, output)  # the client's own start-up included
    if listen:
        assert "Waiting for new tasks with LISTEN on database 'direct'" in output, output
    else:
        assert "sets DISABLE_SERVER_SIDE_CURSORS (a transaction pooler)" in output, output
    assert "exited with" not in output, output  # no worker process died
    # Every task ran and is recorded once, done; nothing is left running. (A
    # task whose own query met the restart failed that attempt and ran again.)
    keys = [f"single-{i}" for i in range(30)] + [f"bulk-{i}" for i in range(200)] + ["ping"]
    ran = set(Execution.objects.filter(key__in=keys).values_list("key", flat=True))
    assert ran == set(keys)
    done = CompletedTask.objects.filter(task_id__in=[*queued, ping])
    assert done.count() == len(queued) + 1
    assert set(done.values_list("status", flat=True)) == {"done"}
    assert Execution.objects.filter(task_name="unique_record", key="pooled").count() == 1
    assert not Task.objects.filter(status="running").exists()
