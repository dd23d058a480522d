"""The chaos suite: workers killed at random while thousands of tasks run.

Bounded to well under a minute per database. Prints one summary line per
scenario (run pytest with -s to see it).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from datetime import datetime

import pytest

from background_task import status
from tests import chaos_workflows
from tests.chaos import CHAOS_ENV, QUEUE, Chaos, UniqueCalls, check, drive, enqueue
from tests.conftest import ROOT, subprocess_env
from tests.scratch_servers import SERVERS, ScratchServer

pytestmark = pytest.mark.django_db(transaction=True)

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TOTAL = int(os.environ.get("BGTASK_CHAOS_TASKS", "2000"))


def test_workers_killed_at_random_lose_nothing_and_never_overlap(start_worker, tmp_path):
    seed = int(os.environ.get("BGTASK_CHAOS_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    enqueue(TOTAL, rng)
    chaos = Chaos(start_worker, subprocess_env(**CHAOS_ENV), rng, str(tmp_path))
    chaos.start_group()
    chaos.start_group()
    unique = UniqueCalls()
    drive(chaos, TOTAL, timeout=240, each=unique.call_all)
    deadline = time.monotonic() + 120  # then check() says what is missing
    while not unique.finished() and time.monotonic() < deadline:
        time.sleep(0.2)
    chaos.stop()
    with chaos.explained(seed):
        figures = check(TOTAL, chaos.stopped_at())
        figures.update(unique.check())
    print(
        f"\nchaos (seed {seed}): tasks={figures['tasks']} kills={chaos.kills} "
        f"re-executions={figures['re-executions']} overlaps={figures['overlaps']} "
        f"lost={figures['lost']} limited-peak={figures['limited peak']} "
        f"unique-calls={figures['unique calls']} deduplicated={figures['deduplicated']}"
    )


@pytest.fixture
def scratch_server():
    """A server of the test's own, of the suite's database kind, with a migrated
    database "chaos" (see tests/scratch_servers.py)."""
    from django.db import connection

    kind = SERVERS.get(connection.vendor)
    if kind is None:
        pytest.skip("the database-restart scenario needs a database server")
    reason = kind.missing()
    if reason:
        if CI:
            pytest.fail(reason)
        pytest.skip(reason)
    server = kind()
    try:
        server.start()
        remote(server, "-m", "django", "migrate", "-v0")
        yield server
    finally:
        server.close()


def remote(server: ScratchServer, *args: str, stdin: str | None = None) -> str:
    """Run Python with the scratch server as the default database."""
    result = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=subprocess_env(**server.env()),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_a_database_restart_mid_run_loses_nothing_and_never_overlaps(
    start_worker, scratch_server, tmp_path
):
    seed = int(os.environ.get("BGTASK_CHAOS_SEED", random.randrange(1 << 30)))
    remote(scratch_server, "tests/chaos_remote.py", "enqueue", str(TOTAL), str(seed))
    chaos = Chaos(
        start_worker,
        subprocess_env(**CHAOS_ENV, **scratch_server.env()),
        random.Random(seed),
        str(tmp_path),
    )
    chaos.start_group()
    chaos.start_group()

    def count_done() -> int:
        return scratch_server.count(
            "SELECT count(*) FROM background_task_completedtask WHERE queue = %s AND status = %s",
            [QUEUE, status.DONE],
        )

    outages: list[tuple[datetime, datetime]] = []
    drive(
        chaos,
        TOTAL,
        timeout=240,
        count_done=count_done,
        extra=lambda: outages.append(scratch_server.restart()),
    )
    chaos.stop()
    assert outages, "the server was never restarted"
    state = {
        "killed_at": {str(pid): at.isoformat() for pid, at in chaos.stopped_at().items()},
        "outages": [(down.isoformat(), up.isoformat()) for down, up in outages],
    }
    with chaos.explained(seed):
        figures = json.loads(
            remote(
                scratch_server,
                "tests/chaos_remote.py",
                "check",
                str(TOTAL),
                stdin=json.dumps(state),
            )
        )
    print(
        f"\nchaos with a {scratch_server.backend} restart (seed {seed}): "
        f"tasks={figures['tasks']} kills={chaos.kills} restarts={len(outages)} "
        f"re-executions={figures['re-executions']} overlaps={figures['overlaps']} "
        f"lost={figures['lost']}"
    )


WORKFLOWS = int(os.environ.get("BGTASK_CHAOS_WORKFLOWS", "500"))


def test_workflows_survive_random_kills(start_worker, tmp_path):
    """500 mixed chains and groups while workers are SIGKILLed at random (one
    group whole) and one group is stopped: every workflow finishes, every
    step ran, every callback was recorded exactly once."""
    seed = int(os.environ.get("BGTASK_CHAOS_SEED", random.randrange(1 << 30)))
    chaos_workflows.enqueue(WORKFLOWS)
    chaos = Chaos(
        start_worker,
        subprocess_env(**CHAOS_ENV),
        random.Random(seed),
        str(tmp_path),
        queues=chaos_workflows.QUEUE,
    )
    chaos.start_group()
    chaos.start_group()
    drive(chaos, chaos_workflows.steps(WORKFLOWS), timeout=240, count_done=chaos_workflows.done)
    chaos.stop()
    with chaos.explained(seed):
        figures = chaos_workflows.check(WORKFLOWS)
    print(
        f"\nworkflow chaos (seed {seed}): workflows={figures['workflows']} "
        f"steps={figures['steps']} kills={chaos.kills} "
        f"re-executions={figures['re-executions']} callbacks={figures['callbacks']}"
    )


def test_workflows_survive_a_database_restart(start_worker, scratch_server, tmp_path):
    """The same workflows while workers are killed and the database restarts."""
    seed = int(os.environ.get("BGTASK_CHAOS_SEED", random.randrange(1 << 30)))
    remote(scratch_server, "tests/chaos_remote.py", "enqueue-workflows", str(WORKFLOWS))
    chaos = Chaos(
        start_worker,
        subprocess_env(**CHAOS_ENV, **scratch_server.env()),
        random.Random(seed),
        str(tmp_path),
        queues=chaos_workflows.QUEUE,
    )
    chaos.start_group()
    chaos.start_group()

    def count_done() -> int:
        return scratch_server.count(
            "SELECT count(*) FROM background_task_completedtask WHERE queue = %s AND status = %s",
            [chaos_workflows.QUEUE, status.DONE],
        )

    outages: list[tuple[datetime, datetime]] = []
    drive(
        chaos,
        chaos_workflows.steps(WORKFLOWS),
        timeout=240,
        count_done=count_done,
        extra=lambda: outages.append(scratch_server.restart()),
    )
    chaos.stop()
    assert outages, "the server was never restarted"
    with chaos.explained(seed):
        figures = json.loads(
            remote(scratch_server, "tests/chaos_remote.py", "check-workflows", str(WORKFLOWS))
        )
    print(
        f"\nworkflow chaos with a {scratch_server.backend} restart (seed {seed}): "
        f"workflows={figures['workflows']} steps={figures['steps']} kills={chaos.kills} "
        f"restarts={len(outages)} re-executions={figures['re-executions']}"
    )
