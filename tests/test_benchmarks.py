"""The benchmark harness runs end to end at a tiny size (no timing is asserted).

Each scenario checks its own counts (every task completed exactly once,
every raw-claim row removed), so a passing run means the figures measure
what they say. The harness runs once, on the SQLite pass; the raw
reference's row is checked on every database.
"""

import json
import os
import subprocess
import sys
import tempfile

import pytest

from tests.conftest import MAIN_PASS, ROOT


@pytest.mark.django_db
def test_the_raw_insert_reference_writes_the_row_an_enqueue_writes():
    """The enqueue ratio compares like with like: same columns, same values."""
    from django.forms.models import model_to_dict

    from background_task.models import Task
    from benchmarks import run
    from benchmarks.benchapp.tasks import noop

    ours = noop(3)
    run.scenario_raw_insert(20)  # rows for noop(0) .. noop(9)
    reference = Task.objects.exclude(pk=ours.pk).get(task_hash=ours.task_hash)
    ours.refresh_from_db()
    differ = {"id", "task_id", "run_at", "scheduled_at", "enqueued_at"}  # each row's own
    assert {k: v for k, v in model_to_dict(reference).items() if k not in differ} == {
        k: v for k, v in model_to_dict(ours).items() if k not in differ
    }


def bench(*options: str) -> tuple[subprocess.CompletedProcess[str], dict[str, list[float]]]:
    """Run benchmarks/run.py on SQLite with ``options``; its output and figures."""
    out = tempfile.mkdtemp()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DB_")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env["BENCH_DB_NAME"] = "bgtask_bench_test"
    script = os.path.join(ROOT, "benchmarks", "run.py")
    result = subprocess.run(
        [sys.executable, script, "--db", "sqlite", *options, "--output", out],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [name] = os.listdir(out)
    with open(os.path.join(out, name)) as handle:
        return result, json.load(handle)["results"]["sqlite"]


@pytest.mark.skipif(not MAIN_PASS, reason="run once, on the main SQLite pass")
def test_every_scenario_runs_and_reports():
    result, figures = bench(
        "--size", "60", "--backlog", "150", "--repeat", "1",
        "--latency-samples", "2", "--idle-seconds", "0.5",
    )  # fmt: skip
    expected = {
        "raw_insert",
        "raw_bulk",
        "enqueue_single",
        "enqueue_bulk",
        "raw_claim",
        "drain_1p",
        "drain_2p",
        "drain_io",
        "drain_limited",
        "drain_rated",
        "drain_rated_peak",
        "drain_rated_1000",
        "drain_rated_1000_peak",
        "drain_async",
        "drain_async_2p",
        "async_rss",
        "backlog_drain",
        "latency_p50",
        "latency_p95",
        "latency_call_p50",
        "worker_rss",
        "idle_cpu",
        "fanout",
        "fanout_start",
        "fanout_callback",
    }
    assert set(figures) == expected
    idle = figures.pop("idle_cpu")
    assert all(value > 0 for values in figures.values() for value in values)
    assert len(idle) == 1 and 0 <= idle[0] <= 100 * os.cpu_count()
    assert "x raw_insert" in result.stdout and "x raw_claim" in result.stdout
    assert "x raw_bulk" in result.stdout


@pytest.mark.skipif(not MAIN_PASS, reason="run once, on the main SQLite pass")
def test_the_steady_scenarios_run_when_named_and_report_their_figures():
    _, figures = bench(
        "--only", "steady_50,steady_1500", "--size", "200", "--repeat", "1",
        "--steady-seconds", "1",
    )  # fmt: skip
    suffixes = ("p50", "p95", "max", "rate", "backlog_max", "backlog_end", "size_start", "size_end")
    expected = {"steady_50", "steady_1500"}
    expected |= {f"{key}_{suffix}" for key in ("steady_50", "steady_1500") for suffix in suffixes}
    assert set(figures) == expected
    # Every queued call started (the scenario raises otherwise); no timing is asserted.
    assert figures["steady_50_p50"][0] <= figures["steady_50"][0] <= figures["steady_50_max"][0]
