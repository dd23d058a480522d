"""The benchmark suite: `make bench` (or `python benchmarks/run.py --help`).

Runs every scenario on each database `--repeat` times and prints min / median
/ max, with our rates as a ratio of a raw-SQL reference on the same database
and driver. Writes the figures as JSON. Each database runs in its own child
process, because Django binds one database configuration per process.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import hashlib
import json
import multiprocessing
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATABASES = ("sqlite", "postgres", "mysql")

ASYNC_CONCURRENCY = 500  # coroutines per worker process in drain_async

# scenario -> (unit, reference scenario or None, what it measures)
SCENARIOS: dict[str, tuple[str, str | None, str]] = {
    "raw_insert": ("rows/s", None, "reference: one INSERT per transaction, raw SQL, 1 client"),
    "enqueue_single": ("tasks/s", "raw_insert", "task() calls in autocommit, 1 client"),
    "raw_bulk": (
        "rows/s",
        None,
        "reference: the same rows loaded raw in batches of 1000 (COPY on PostgreSQL, "
        "executemany elsewhere), one transaction",
    ),
    "enqueue_bulk": ("tasks/s", "raw_bulk", "task.bulk() in batches of 1000"),
    "raw_claim": (
        "rows/s",
        None,
        "reference: claim+delete 50 rows per transaction, raw SQL, 2 clients",
    ),
    "drain_1p": ("tasks/s", "raw_claim", "no-op tasks, 1 worker process"),
    "drain_2p": ("tasks/s", "raw_claim", "no-op tasks, 2 worker processes"),
    "drain_io": ("tasks/s", None, "10 ms sleeping tasks, 2 processes x 8 threads"),
    "drain_limited": (
        "tasks/s",
        "drain_2p",
        "no-op tasks over 100 keys with concurrency_limit=1, 2 worker processes",
    ),
    "drain_rated": (
        "tasks/s",
        None,
        "--size / 5 no-op tasks (at least 400) with rate_limit='200/s', 2 worker "
        "processes: starts per second over the first n / 200 - 1 seconds (200 if met)",
    ),
    "drain_rated_1000": (
        "tasks/s",
        None,
        "--size + 1000 no-op tasks (at least 2,000) with rate_limit='1000/s', 2 worker "
        "processes: starts per second over the first n / 1000 - 1 seconds (1,000 if met)",
    ),
    "drain_async": (
        "tasks/s",
        None,
        f"async tasks awaiting 0.1 s, 1 worker process, --async-concurrency {ASYNC_CONCURRENCY} "
        f"(at most {ASYNC_CONCURRENCY * 10:,}/s)",
    ),
    "drain_async_2p": ("tasks/s", None, "as drain_async, 2 worker processes"),
    "backlog_drain": ("tasks/s", "drain_1p", "first --size tasks of a --backlog queue, 1 process"),
    "latency_p50": ("ms", None, "enqueue commit to task start, idle worker, default options"),
    "latency_p95": ("ms", None, "as above, 95th percentile"),
    "latency_call_p50": ("ms", None, "as latency_p50, but from before the task() call"),
    "worker_rss": ("MB", None, "peak RSS of the worker process in drain_1p"),
    "drain_rated_peak": ("starts", None, "the most starts in any second of drain_rated (<= 200)"),
    "drain_rated_1000_peak": (
        "starts",
        None,
        "the most starts in any second of drain_rated_1000 (<= 1,000)",
    ),
    "async_rss": (
        "MB",
        None,
        "peak RSS of 1 worker process holding 1,000 coroutines (2,000 tasks awaiting 2 s, "
        "--async-concurrency 1000)",
    ),
    "idle_cpu": ("% core", None, "CPU time of an idle worker over --idle-seconds (latency run)"),
    "steady_50": (
        "ms",
        None,
        "p99 pick-up latency from the enqueue's commit: 2 producers at 50 % of this run's "
        "drain_2p for --steady-seconds, 2 worker processes, history pruned after 10 s",
    ),
    "steady_80": ("ms", None, "as steady_50, producers at 80 % of drain_2p"),
    "steady_1500": ("ms", None, "as steady_50, 1 producer at 1,500 tasks/s, 1 worker process"),
}
SCENARIOS.update(
    {
        "history": (
            "tasks/s",
            "drain_2p",
            "as drain_2p, on a database whose history holds --history finished tasks",
        ),
        "history_enqueue": (
            "tasks/s",
            "enqueue_single",
            "as enqueue_single, beside that history",
        ),
        "history_dashboard": ("ms", None, "the admin dashboard's data (24 h window) over it"),
        "history_pruning": (
            "tasks/s",
            "history",
            "as history, while prune_tasks --older-than 1d --pause P (--prune-pause) deletes "
            "the history in batches",
        ),
        "history_pruned": ("rows/s", None, "history rows prune_tasks deleted meanwhile"),
        "fanout": (
            "tasks/s",
            "drain_2p",
            "a workflow group of --size no-op steps and a then, 2 worker processes: members "
            "per second between the first start and the last end",
        ),
        "fanout_start": (
            "tasks/s",
            "enqueue_bulk",
            "group(...).start() of those --size steps: steps stored per second",
        ),
        "fanout_callback": ("ms", None, "from the last member's end to the start of the then"),
    }
)
# Scenarios that run only when --only names them (they take minutes).
OPT_IN = {"steady_50", "steady_80", "steady_1500", "history"}
# What each steady run reports besides its p99: name suffix -> (unit, what).
STEADY_FIGURES = {
    "p50": ("ms", "pick-up latency, median"),
    "p95": ("ms", "pick-up latency, 95th percentile"),
    "max": ("ms", "pick-up latency, worst"),
    "rate": ("tasks/s", "enqueue rate the producers reached"),
    "backlog_max": ("tasks", "most waiting tasks in any one-second sample"),
    "backlog_end": ("tasks", "waiting tasks when the producers stopped"),
    "size_start": ("MB", "task + history tables and indexes before the producers started"),
    "size_1m": ("MB", "the same a minute after they started (runs of over 60 s)"),
    "size_end": ("MB", "the same once the producers stopped"),
}
for _steady in sorted(OPT_IN):
    for _suffix, (_unit, _what) in STEADY_FIGURES.items():
        SCENARIOS[f"{_steady}_{_suffix}"] = (_unit, None, f"{_steady}: {_what}")


# -- the parent: one child process per database ------------------------------


def reachable(db: str) -> bool:
    if db == "sqlite":
        return True
    sys.path.insert(0, ROOT)
    from tests.run_suite import mysql_reachable, postgres_reachable

    probe = postgres_reachable if db == "postgres" else mysql_reachable
    return probe() is None


def print_table(results: dict[str, dict[str, list[float]]]) -> None:
    header = f"{'database':<9} {'scenario':<22} {'unit':<8} {'min':>10} {'median':>10} {'max':>10}"
    print(f"\n{header}  ratio")
    for db, figures in results.items():
        for name, (unit, reference, _) in SCENARIOS.items():
            values = figures.get(name)
            if not values:
                continue
            median = statistics.median(values)
            ratio = ""
            if reference and figures.get(reference):
                ratio = f"{median / statistics.median(figures[reference]):.2f} x {reference}"
            print(
                f"{db:<9} {name:<22} {unit:<8} {min(values):>10,.1f} {median:>10,.1f} "
                f"{max(values):>10,.1f}  {ratio}"
            )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", default="all", choices=[*DATABASES, "all"])
    parser.add_argument(
        "--size", type=int, default=10000, help="tasks per drain run (default 10000)"
    )
    parser.add_argument(
        "--backlog", type=int, default=100000, help="queue size for backlog_drain (default 100000)"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="repetitions of each scenario (default 3)"
    )
    parser.add_argument("--latency-samples", type=int, default=20)
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=10.0,
        help="how long the latency run watches its idle worker's CPU time (default 10)",
    )
    parser.add_argument(
        "--only",
        help="comma-separated scenarios to run (the steady_* scenarios run only when named)",
    )
    parser.add_argument(
        "--steady-seconds",
        type=float,
        default=60.0,
        help="how long the producers of a steady_* scenario run (default 60)",
    )
    parser.add_argument(
        "--history",
        type=int,
        default=10_000_000,
        help="finished tasks in the history of the history scenario (default 10,000,000)",
    )
    parser.add_argument(
        "--reuse-history",
        action="store_true",
        help="history scenario: keep the history database an earlier run loaded, if any "
        "(migrated to this checkout's schema) instead of loading it again",
    )
    parser.add_argument(
        "--prune-pause",
        type=float,
        default=0.1,
        help="prune_tasks --pause in the history scenario (default 0.1)",
    )
    parser.add_argument(
        "--steady-producers",
        type=int,
        default=2,
        help="producer processes of steady_50 and steady_80 (default 2)",
    )
    parser.add_argument(
        "--steady-batch",
        type=int,
        default=1,
        help="tasks each producer queues per call of a steady_* scenario: 1 calls "
        "steady(i), more call steady.bulk() (default 1)",
    )
    parser.add_argument("--producer", help=argparse.SUPPRESS)
    parser.add_argument(
        "--prepared",
        action="store_true",
        help="PostgreSQL: server-side binding and prepared statements (OPTIONS), as "
        "docs/performance.md suggests where no connection pooler sits in between",
    )
    parser.add_argument(
        "--output", default=os.path.join(ROOT, "bench-results"), help="folder for the JSON"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.producer:
        return producer(args.producer)
    if args.child:
        return child(args)
    if args.prepared:
        os.environ["BENCH_PG_PREPARE"] = "1"  # read by benchmarks/settings.py, here and in workers
    dbs = DATABASES if args.db == "all" else (args.db,)
    results: dict[str, dict[str, list[float]]] = {}
    failed: list[str] = []
    for db in dbs:
        if not reachable(db):
            print(f"-- {db}: not reachable, skipped")
            continue
        print(f"-- {db}: running", flush=True)
        out = subprocess.run(
            [sys.executable, __file__, "--child", *sys.argv[1:]],
            env=dict(os.environ, BENCH_DB=db, PYTHONPATH=ROOT),
            stdout=subprocess.PIPE,
            text=True,
        )
        if out.returncode != 0:
            print(f"-- {db}: FAILED (exit {out.returncode})")
            failed.append(db)
            continue
        results[db] = json.loads(out.stdout.strip().splitlines()[-1])
    print_table(results)
    os.makedirs(args.output, exist_ok=True)
    path = os.path.join(args.output, f"bench-{datetime.now():%Y%m%d-%H%M%S}.json")
    with open(path, "w") as handle:
        json.dump(
            {
                "machine": {
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "python": platform.python_version(),
                },
                "options": {
                    "size": args.size,
                    "backlog": args.backlog,
                    "repeat": args.repeat,
                    "history": args.history,
                    "prune_pause": args.prune_pause,
                    "prepared": args.prepared,
                },
                "scenarios": {k: {"unit": v[0], "what": v[2]} for k, v in SCENARIOS.items()},
                "results": results,
            },
            handle,
            indent=2,
        )
    print(f"\nJSON: {path}")
    if failed:
        print(f"FAILED on: {', '.join(failed)}")
    return 1 if failed else 0


# -- the child: one database ---------------------------------------------------


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    # Every run starts from a fresh database, migrated from scratch, so a
    # schema left by an older checkout can never skew or break it.
    create_database(os.environ.get("BENCH_DB_NAME", "bgtask_bench"))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def create_database(name: str) -> None:
    """Drop and create the database ``name`` on this run's server (empty)."""
    db = os.environ.get("BENCH_DB", "sqlite")
    if db == "postgres":
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    elif db == "mysql":
        import MySQLdb

        conn = MySQLdb.connect(host="127.0.0.1", user="root", passwd="")
        conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        conn.close()
    else:
        import tempfile

        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(tempfile.gettempdir(), f"{name}.sqlite3{suffix}"))


def reset() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for table in (
            "background_task",
            "background_task_completedtask",
            "background_task_concurrencyslot",
            "background_task_rateslot",
        ):
            if connection.vendor == "sqlite":
                cursor.execute(f"DELETE FROM {table}")
            else:
                cursor.execute(f"TRUNCATE TABLE {table}")
        # Workflows (fanout): parents first lose their children, which MySQL checks row by row.
        cursor.execute("UPDATE background_task_workflownode SET parent_id = NULL")
        cursor.execute("DELETE FROM background_task_workflownode")
        cursor.execute("DELETE FROM background_task_workflow")
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM")
    else:
        analyze()


def analyze() -> None:
    """Refresh the planner statistics of the task table (server databases)."""
    from django.db import connection

    if connection.vendor == "sqlite":
        return
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ANALYZE background_task")
        else:
            cursor.execute("ANALYZE TABLE background_task")
            cursor.fetchall()


def worker_env(**extra: str) -> dict[str, str]:
    return dict(os.environ, DJANGO_SETTINGS_MODULE="benchmarks.settings", PYTHONPATH=ROOT, **extra)


def run_workers(
    processes: int, *options: str, env: dict[str, str] | None = None
) -> tuple[float, float]:
    """Start burst workers, wait for them; return (wall seconds, peak RSS MB of the first)."""
    from django.db import connections

    connections.close_all()
    started = time.monotonic()
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "django",
                "process_tasks",
                "--burst",
                "--sleep",
                "0.05",
                *options,
            ],
            env=env or worker_env(),
            cwd=ROOT,
        )
        for _ in range(processes)
    ]
    peak = 0
    while any(child.poll() is None for child in children):
        peak = max(peak, rss_kb(children[0].pid))
        time.sleep(0.05)
    if any(child.returncode for child in children):
        raise RuntimeError(f"a worker failed: {[c.returncode for c in children]}")
    return time.monotonic() - started, peak / 1024


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of a running process (Linux), None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drained_rate(expected: int, after_pk: int = 0) -> float:
    """Tasks per second between the first start and the last finish; checks the
    counts. ``after_pk``: only history rows after that one count."""
    from django.db.models import Max, Min

    from background_task.models import CompletedTask

    done = CompletedTask.objects.filter(status="done", pk__gt=after_pk)
    count = done.count()
    if count != expected:
        raise RuntimeError(f"expected {expected} completed tasks, found {count}")
    span = done.aggregate(first=Min("started_at"), last=Max("finished_at"))
    seconds = (span["last"] - span["first"]).total_seconds()
    return expected / max(seconds, 1e-6)


def enqueue_noops(count: int, task: Any = None) -> None:
    from benchmarks.benchapp.tasks import noop

    task = task or noop
    for start in range(0, count, 10000):
        task.bulk([(i,) for i in range(start, min(start + 10000, count))], batch_size=1000)


# The columns an enqueue writes (NULLs left out), in the order of its INSERT.
RAW_COLUMNS = [
    "task_name",
    "task_params",
    "task_hash",
    "run_at",
    "repeat",
    "last_error",
    "task_id",
    "status",
    "enqueued_at",
    "scheduled_at",
    "errors",
    "worker_ids",
    "priority",
    "attempts",
    "cancel_requested",
    "cancel_force",
]


def reference_row(i: int, now: datetime) -> tuple[Any, ...]:
    """The row ``noop(i)`` writes, made without our code: the references
    insert the same data, since the index entries of a real (scattered)
    ``task_hash`` cost more to insert than a constant's."""
    params = f"[[{i}], {{}}]"
    digest = hashlib.sha1(f"benchmarks.benchapp.tasks.noop{params}".encode()).hexdigest()
    return (
        "benchmarks.benchapp.tasks.noop", params, digest, now, 0, "", str(uuid.uuid4()),
        "waiting", now, now, "[]", "[]", 0, 0, False, False,
    )  # fmt: skip


def scenario_raw_insert(size: int) -> float:
    from django.db import connection
    from django.utils import timezone

    n = max(size // 2, 10)
    now = timezone.now()
    rows = [reference_row(i, now) for i in range(n)]
    columns = ", ".join(connection.ops.quote_name(name) for name in RAW_COLUMNS)
    # Constants as SQL literals and the rest as parameters, as an enqueue sends them.
    sql = (
        f"INSERT INTO background_task ({columns}) "
        "VALUES (%s, %s, %s, %s, 0, '', %s, 'waiting', %s, %s, '[]', '[]', 0, 0, FALSE, FALSE)"
    )
    with connection.cursor() as cursor:
        started = time.perf_counter()
        for row in rows:
            cursor.execute(sql, row[:4] + row[6:7] + row[8:10])
        elapsed = time.perf_counter() - started
    return n / elapsed


def scenario_raw_bulk(size: int) -> float:
    from django.db import connection, transaction
    from django.utils import timezone

    now = timezone.now()
    columns = ", ".join(connection.ops.quote_name(name) for name in RAW_COLUMNS)
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        for start in range(0, size, 1000):
            rows = [reference_row(i, now) for i in range(start, min(start + 1000, size))]
            if connection.vendor == "postgresql":
                raw = cursor.cursor  # the psycopg cursor under Django's wrapper
                with raw.copy(f"COPY background_task ({columns}) FROM STDIN") as copy:
                    for values in rows:
                        copy.write_row(values)
            else:
                placeholders = ", ".join(["%s"] * len(RAW_COLUMNS))
                cursor.executemany(
                    f"INSERT INTO background_task ({columns}) VALUES ({placeholders})", rows
                )
    return size / (time.perf_counter() - started)


def scenario_enqueue_single(size: int) -> float:
    from benchmarks.benchapp.tasks import noop

    n = max(size // 2, 10)
    started = time.perf_counter()
    for i in range(n):
        noop(i)
    return n / (time.perf_counter() - started)


def scenario_enqueue_bulk(size: int) -> float:
    from benchmarks.benchapp.tasks import noop

    started = time.perf_counter()
    noop.bulk([(i,) for i in range(size)], batch_size=1000)
    return size / (time.perf_counter() - started)


def _raw_claim_client(limit: int, counter: Any) -> None:
    from django.db import OperationalError, connection

    vendor = connection.vendor
    done = 0
    while True:
        try:
            got = _raw_claim_once(vendor, limit)
        except OperationalError as exc:
            if "Deadlock" in str(exc) or "deadlock" in str(exc):
                continue  # InnoDB picked this transaction as the victim; try again
            raise
        if not got:
            break
        done += got
    with counter.get_lock():
        counter.value += done


def _raw_claim_once(vendor: str, limit: int) -> int:
    """Claim and delete up to ``limit`` rows in one transaction; return how many."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        if vendor == "sqlite":
            cursor.execute(
                "DELETE FROM background_task WHERE id IN (SELECT id FROM background_task "
                "WHERE status = 'waiting' ORDER BY priority DESC, run_at, id LIMIT %s)",
                [limit],
            )
            return int(cursor.rowcount)
        cursor.execute(
            "SELECT id FROM background_task WHERE status = 'waiting' "
            "ORDER BY priority DESC, run_at, id LIMIT %s FOR UPDATE SKIP LOCKED",
            [limit],
        )
        ids = [row[0] for row in cursor.fetchall()]
        if ids:
            placeholders = ",".join(["%s"] * len(ids))
            cursor.execute(f"DELETE FROM background_task WHERE id IN ({placeholders})", ids)
        return len(ids)


def scenario_raw_claim(size: int) -> float:
    from django.db import connections

    enqueue_noops(size)
    connections.close_all()
    context = multiprocessing.get_context("fork")
    counter = context.Value("i", 0)
    clients = [context.Process(target=_raw_claim_client, args=(50, counter)) for _ in range(2)]
    started = time.perf_counter()
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    elapsed = time.perf_counter() - started
    if any(client.exitcode for client in clients):
        raise RuntimeError(f"a raw claim client failed: {[c.exitcode for c in clients]}")
    if counter.value != size:
        raise RuntimeError(f"raw claim removed {counter.value} rows, expected {size}")
    return size / elapsed


def make_drain(processes: int) -> Callable[[int], float]:
    def scenario(size: int) -> float:
        enqueue_noops(size)
        # Planner statistics as autovacuum would have them after a large
        # enqueue (the reference machine's PostgreSQL runs without autovacuum).
        analyze()
        _, peak = run_workers(processes)
        if processes == 1:
            EXTRA["worker_rss"].append(peak)
        return drained_rate(size)

    return scenario


def scenario_fanout(size: int) -> float:
    """A group of ``size`` no-op steps with a ``then``, drained by 2 processes."""
    from django.db.models import Max, Min

    from background_task import group
    from background_task.models import CompletedTask, WorkflowNode
    from benchmarks.benchapp.tasks import noop

    started = time.perf_counter()
    workflow = group(*(noop.si(i) for i in range(size)), then=noop.si(-1)).start()
    EXTRA["fanout_start"].append(size / (time.perf_counter() - started))
    analyze()
    run_workers(2)
    workflow.refresh()
    if workflow.status != "done":
        raise RuntimeError(f"the fan-out workflow ended {workflow.status!r}")
    nodes = WorkflowNode.objects.filter(workflow=workflow)
    members = CompletedTask.objects.filter(
        status="done", step_id__in=nodes.filter(role="member").values("pk")
    )
    count = members.count()
    if count != size:
        raise RuntimeError(f"expected {size} finished members, found {count}")
    span = members.aggregate(first=Min("started_at"), last=Max("finished_at"))
    then = CompletedTask.objects.get(task_id=nodes.get(role="then").task_id)
    EXTRA["fanout_callback"].append((then.started_at - span["last"]).total_seconds() * 1000)
    return size / max((span["last"] - span["first"]).total_seconds(), 1e-6)


def scenario_drain_io(size: int) -> float:
    from benchmarks.benchapp.tasks import sleep_10ms

    n = max(size // 10, 20)
    enqueue_noops(n, sleep_10ms)
    run_workers(2, "--threads", "8")
    return drained_rate(n)


def make_drain_async(processes: int) -> Callable[[int], float]:
    def scenario(size: int) -> float:
        from benchmarks.benchapp.async_tasks import await_2s, await_100ms

        enqueue_noops(size, await_100ms)
        analyze()
        env = worker_env(BENCH_ASYNC="1")
        run_workers(processes, "--async-concurrency", str(ASYNC_CONCURRENCY), env=env)
        rate = drained_rate(size)
        if processes == 1:
            reset()
            enqueue_noops(2000, await_2s)
            _, peak = run_workers(1, "--async-concurrency", "1000", env=env)
            drained_rate(2000)
            EXTRA["async_rss"].append(peak)
        return rate

    return scenario


def scenario_drain_limited(size: int) -> float:
    from benchmarks.benchapp.tasks import noop_limited

    enqueue_noops(size, noop_limited)
    analyze()
    run_workers(2)
    return drained_rate(size)


def make_drain_rated(
    per_second: int, task_name: str, count: Callable[[int], int], peak: str
) -> Callable[[int], float]:
    """``count(size)`` no-ops of ``task_name`` (a rate of ``per_second``)
    through 2 workers: the long-run starts per second, and in EXTRA[peak]
    the most in any one second."""

    def scenario(size: int) -> float:
        from django.db import connections

        from background_task.models import CompletedTask
        from benchmarks.benchapp import tasks

        n = count(size)
        enqueue_noops(n, getattr(tasks, task_name))
        analyze()
        # Not --burst: a burst worker stops once nothing is due, and tasks
        # waiting for their rate's next start are not due yet.
        connections.close_all()
        children = [
            subprocess.Popen(
                [sys.executable, "-m", "django", "process_tasks", "--sleep", "0.05"],
                env=worker_env(),
                cwd=ROOT,
            )
            for _ in range(2)
        ]
        try:
            deadline = time.monotonic() + 120 + n / 100
            while CompletedTask.objects.count() < n and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            for child in children:
                child.send_signal(signal.SIGTERM)
            for child in children:
                child.wait(timeout=60)
        drained_rate(n)  # checks that every task ran
        # A no-op ends a moment after it starts, and started_at is when it was
        # claimed (a claimed task may wait for its rate), so its end marks its start.
        starts = sorted(CompletedTask.objects.values_list("finished_at", flat=True))
        # The most starts in any second (at most the rate), and the long-run
        # rate: the starts in the first n / rate - 1 seconds, which a limiter
        # that lets the whole rate start at once every second fills with
        # n - rate starts.
        second = timedelta(seconds=1)
        EXTRA[peak].append(
            max(bisect.bisect_left(starts, at + second) - i for i, at in enumerate(starts))
        )
        span = n / per_second - 1
        return bisect.bisect_left(starts, starts[0] + timedelta(seconds=span)) / span

    return scenario


def scenario_backlog_drain(size: int) -> float:
    enqueue_noops(OPTIONS["backlog"])
    analyze()
    run_workers(1, "--max-tasks", str(size))
    return drained_rate(size)


def scenario_latency(size: int) -> float:
    from django.db import connections

    from background_task.models import CompletedTask
    from benchmarks.benchapp.tasks import stamp

    connections.close_all()
    worker = subprocess.Popen(
        [sys.executable, "-m", "django", "process_tasks"], env=worker_env(), cwd=ROOT
    )
    samples: list[float] = []
    from_call: list[float] = []
    try:
        time.sleep(2)  # let it start and go idle
        before = cpu_seconds(worker.pid)
        time.sleep(OPTIONS["idle_seconds"])
        after = cpu_seconds(worker.pid)
        if before is not None and after is not None:
            EXTRA["idle_cpu"].append(100 * (after - before) / OPTIONS["idle_seconds"])
        for _ in range(OPTIONS["latency_samples"]):
            sent = time.time()
            task = stamp(sent)
            committed = time.time()  # autocommit: the INSERT is committed once stamp() returns
            deadline = time.monotonic() + 30
            while True:
                row = (
                    CompletedTask.objects.filter(task_id=task.task_id)
                    .values_list("result_json", flat=True)
                    .first()
                )
                if row is not None:
                    started_at = json.loads(row)
                    samples.append((started_at - committed) * 1000)
                    from_call.append((started_at - sent) * 1000)
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("a latency probe did not run within 30s")
                time.sleep(0.02)  # the latency is measured inside the task; poll gently
            time.sleep(random.uniform(0.05, 0.3))
    finally:
        worker.terminate()
        worker.wait(30)
    samples.sort()
    EXTRA["latency_p95"].append(samples[min(len(samples) - 1, int(len(samples) * 0.95))])
    EXTRA["latency_call_p50"].append(statistics.median(from_call))
    return statistics.median(samples)


def table_megabytes() -> float:
    """The task and history tables with their indexes, in MB."""
    from django.db import connection

    tables = ("background_task", "background_task_completedtask")
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT pg_total_relation_size(%s) + pg_total_relation_size(%s)", list(tables)
            )
            size = cursor.fetchone()[0]
        elif connection.vendor == "mysql":
            for table in tables:
                cursor.execute(f"ANALYZE TABLE {table}")
                cursor.fetchall()
            cursor.execute(
                "SELECT SUM(data_length + index_length) FROM information_schema.tables "
                "WHERE table_schema = DATABASE() AND table_name IN (%s, %s)",
                list(tables),
            )
            size = cursor.fetchone()[0]
        else:  # the whole file: SQLite keeps no size per table without dbstat
            cursor.execute("PRAGMA page_count")
            pages = cursor.fetchone()[0]
            cursor.execute("PRAGMA page_size")
            size = pages * cursor.fetchone()[0]
    return float(size or 0) / 1e6


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM the worker processes and wait for them to end."""
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(60)


@contextlib.contextmanager
def autovacuum_on() -> Iterator[None]:
    """PostgreSQL: autovacuum on while the block runs, as on a production server.

    The project's reference machine runs PostgreSQL with autovacuum off (the
    drains ANALYZE by hand); a sustained load without it only grows, so the
    steady scenarios turn it on with ALTER SYSTEM and put it back afterwards.
    """
    from django.db import connection

    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SHOW autovacuum")
        if cursor.fetchone()[0] == "on":
            yield
            return
        print("   autovacuum is off on this server: on for this scenario", file=sys.stderr)
        cursor.execute("ALTER SYSTEM SET autovacuum = on")
        cursor.execute("SELECT pg_reload_conf()")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER SYSTEM RESET autovacuum")
            cursor.execute("SELECT pg_reload_conf()")


def producer(spec: str) -> int:
    """``--producer rate,seconds,index,directory,start,batch``: queue ``steady(i)``
    at a fixed rate from ``start`` (a time.time()) on, ``batch`` tasks per call
    (one ``steady.bulk()`` when more than one), noting each call's commit."""
    rate_text, seconds_text, index_text, directory, start_text, batch_text = spec.split(",")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    import django

    django.setup()
    from benchmarks.benchapp.tasks import steady

    rate, index, batch = float(rate_text), int(index_text), int(batch_text)
    count, base = int(rate * float(seconds_text)), index * 1_000_000_000
    lines: list[str] = []
    start = time.monotonic() + (float(start_text) - time.time())
    for k in range(0, count, batch):
        delay = start + k / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        calls = range(base + k, base + min(k + batch, count))
        if batch == 1:
            steady(base + k)
        else:
            steady.bulk([(i,) for i in calls])
        committed = time.time()  # autocommit: committed on return
        lines.extend(f"{i} {committed}\n" for i in calls)
    with open(os.path.join(directory, f"producer-{index}.txt"), "w") as out:
        out.writelines(lines)
    return 0


def make_steady(
    key: str,
    *,
    fraction: float | None = None,
    rate: float | None = None,
    processes: int = 2,
    producers: int | None = None,
) -> Callable[[int], float]:
    """Producers enqueue at a fixed rate while workers run; the p99 of the
    pick-up latency (a task's start minus its enqueue's commit) in ms."""

    def scenario(size: int) -> float:
        import tempfile

        from background_task.models import Task

        feeding = producers or OPTIONS["steady_producers"]
        target = rate
        if target is None:
            assert fraction is not None
            drained = OPTIONS["results"].get("drain_2p")
            if not drained:  # measure it now: the reference of this run
                drained = [make_drain(2)(size)]
                reset()
            target = fraction * statistics.median(drained)
        directory = tempfile.mkdtemp(prefix="bench-steady-")
        # BENCH_STEADY_TTL="" turns pruning off (to tell its cost apart).
        env = worker_env(
            BENCH_STEADY_DIR=directory, BENCH_RESULT_TTL=os.environ.get("BENCH_STEADY_TTL", "10")
        )
        seconds = OPTIONS["steady_seconds"]
        with contextlib.ExitStack() as cleanup:
            cleanup.enter_context(autovacuum_on())
            workers = [
                subprocess.Popen(
                    [sys.executable, "-m", "django", "process_tasks"], env=env, cwd=ROOT
                )
                for _ in range(processes)
            ]
            cleanup.callback(stop, workers)
            time.sleep(2)  # started and idle
            EXTRA[f"{key}_size_start"].append(table_megabytes())
            start = time.time() + 1.0
            feeders = [
                subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        "--producer",
                        f"{target / feeding},{seconds},{index},{directory},{start},"
                        f"{OPTIONS['steady_batch']}",
                    ],
                    env=worker_env(),
                    cwd=ROOT,
                )
                for index in range(feeding)
            ]
            backlog: list[int] = []
            size_1m = None
            while any(feeder.poll() is None for feeder in feeders):
                backlog.append(Task.objects.filter(status="waiting").count())
                if size_1m is None and time.time() >= start + 60:
                    size_1m = table_megabytes()
                time.sleep(1.0)
            if size_1m is not None:
                EXTRA[f"{key}_size_1m"].append(size_1m)
            if any(feeder.returncode for feeder in feeders):
                raise RuntimeError("a producer failed")
            EXTRA[f"{key}_backlog_end"].append(Task.objects.filter(status="waiting").count())
            EXTRA[f"{key}_size_end"].append(table_megabytes())
            deadline = time.monotonic() + 120
            while Task.objects.exists():
                if time.monotonic() > deadline:
                    raise RuntimeError("the workers did not catch up within 120 s")
                time.sleep(0.2)
        committed: dict[str, float] = {}
        started: dict[str, float] = {}
        for name in os.listdir(directory):
            into = committed if name.startswith("producer-") else started
            with open(os.path.join(directory, name)) as lines:
                for line in lines:
                    call, when = line.split()
                    into[call] = float(when)
        missing = set(committed) - set(started)
        if missing:
            raise RuntimeError(f"{len(missing)} queued tasks never started")
        latencies = sorted((started[call] - committed[call]) * 1000 for call in committed)

        def percentile(share: float) -> float:
            return latencies[min(len(latencies) - 1, int(len(latencies) * share))]

        EXTRA[f"{key}_p50"].append(percentile(0.5))
        EXTRA[f"{key}_p95"].append(percentile(0.95))
        EXTRA[f"{key}_max"].append(latencies[-1])
        span = max(committed.values()) - min(committed.values())
        EXTRA[f"{key}_rate"].append(len(committed) / max(span, 1e-6))
        EXTRA[f"{key}_backlog_max"].append(max(backlog, default=0))
        return percentile(0.99)

    return scenario


HISTORY_SPAN_DAYS = 30  # the loaded history's finishing times spread over this many days
HISTORY_CHUNK = 500_000  # rows per INSERT ... SELECT while loading it


def history_sql(vendor: str, quote: Callable[[str], str]) -> str:
    """One INSERT ... SELECT of finished no-op tasks ``%(lo)s`` to ``%(hi)s``
    of ``%(rows)s``, the oldest first, over the last HISTORY_SPAN_DAYS days;
    one in 50 failed, one in 10 in the queue "other"."""
    columns = ", ".join(
        quote(name)
        for name in (
            "task_name", "task_params", "task_hash", "priority", "run_at", "repeat", "queue",
            "attempts", "failed_at", "last_error", "task_id", "status", "enqueued_at",
            "scheduled_at", "started_at", "last_attempted_at", "finished_at", "errors",
            "worker_ids",
        )
    )  # fmt: skip
    failed, other = "g %% 50 = 0", "g %% 10 = 0"
    if vendor == "postgresql":
        params = "'[[' || g || '], {}]'"
        digest, task_id = "rpad(md5(g::text), 40, '0')", "md5('t' || g)"
        ago = "((%(rows)s - g)::float8 / %(rows)s * %(span)s) * interval '1 second'"
        series = f"SELECT g, now() - {ago} AS t FROM generate_series(%(lo)s, %(hi)s) AS g"
        at = {"t": "t", "t2": "t - interval '2 seconds'", "t1": "t - interval '10 milliseconds'"}
    elif vendor == "mysql":
        params = "CONCAT('[[', g, '], {}]')"
        digest, task_id = "RPAD(MD5(g), 40, '0')", "MD5(CONCAT('t', g))"
        ago = "FLOOR((%(rows)s - g) / %(rows)s * %(span)s * 1000000)"
        series = (
            f"SELECT g, TIMESTAMPADD(MICROSECOND, -{ago}, UTC_TIMESTAMP(6)) AS t "
            "FROM (SELECT n + %(lo)s AS g FROM bench_seq WHERE n <= %(hi)s - %(lo)s) AS numbers"
        )
        at = {
            "t": "t",
            "t2": "TIMESTAMPADD(SECOND, -2, t)",
            "t1": "TIMESTAMPADD(MICROSECOND, -10000, t)",
        }
    else:
        params = "'[[' || g || '], {}]'"
        digest, task_id = "printf('%%040d', g)", "lower(hex(randomblob(16)))"
        series = (
            "WITH RECURSIVE s(g) AS (SELECT %(lo)s UNION ALL SELECT g + 1 FROM s WHERE g < %(hi)s) "
            "SELECT g, julianday('now') - (%(rows)s - g) * 1.0 / %(rows)s * %(span)s / 86400.0 "
            "AS t FROM s"
        )
        stamp = "strftime('%%Y-%%m-%%d %%H:%%M:%%f', {})"
        at = {
            "t": stamp.format("t"),
            "t2": stamp.format("t - 2.0 / 86400"),
            "t1": stamp.format("t - 0.01 / 86400"),
        }
    values = (
        f"'benchmarks.benchapp.tasks.noop', {params}, {digest}, 0, {at['t']}, 0, "
        f"CASE WHEN {other} THEN 'other' END, 1, CASE WHEN {failed} THEN {at['t']} END, "
        f"CASE WHEN {failed} THEN 'ValueError: a failure of the loaded history' ELSE '' END, "
        f"{task_id}, CASE WHEN {failed} THEN 'error' ELSE 'done' END, {at['t2']}, {at['t2']}, "
        f"{at['t1']}, {at['t1']}, {at['t']}, '[]', '[]'"
    )
    return (
        f"INSERT INTO background_task_completedtask ({columns}) "
        f"SELECT {values} FROM ({series}) AS history_rows"
    )


def load_history(rows: int) -> None:
    """``rows`` finished tasks in the history, written by the server itself."""
    from django.db import connection, transaction

    vendor = connection.vendor
    sql = history_sql(vendor, connection.ops.quote_name)
    with connection.cursor() as cursor:
        if vendor == "mysql":  # 0 .. HISTORY_CHUNK - 1, from ten digits
            cursor.execute("CREATE TABLE bench_seq (n INT PRIMARY KEY)")
            ten = " UNION ALL ".join(f"SELECT {i} AS d" for i in range(10))
            digits = " CROSS JOIN ".join(f"({ten}) d{k}" for k in range(6))
            number = " + ".join(f"d{k}.d * {10**k}" for k in range(6))
            cursor.execute(
                f"INSERT INTO bench_seq SELECT n FROM (SELECT {number} AS n FROM {digits}) AS x "
                f"WHERE n < {HISTORY_CHUNK}"
            )
    span = HISTORY_SPAN_DAYS * 86400
    for lo in range(1, rows + 1, HISTORY_CHUNK):
        hi = min(lo + HISTORY_CHUNK - 1, rows)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql % {"lo": lo, "hi": hi, "rows": rows, "span": span})
        print(f"   history: {hi:,} of {rows:,} rows", file=sys.stderr, flush=True)
    with connection.cursor() as cursor:
        if vendor == "mysql":
            cursor.execute("DROP TABLE bench_seq")
            cursor.execute("ANALYZE TABLE background_task_completedtask")
            cursor.fetchall()
        else:
            cursor.execute("ANALYZE background_task_completedtask")


def history_exists(name: str) -> bool:
    """Whether the database ``name`` holds a history (of an earlier run)."""
    from django.db import DatabaseError

    from background_task.models import CompletedTask

    try:
        with on_database(name):
            return CompletedTask.objects.exists()
    except DatabaseError:
        return False


@contextlib.contextmanager
def on_database(name: str) -> Iterator[None]:
    """This process and the workers it starts use the database ``name``."""
    import tempfile

    from django.db import connection

    def use(database: str) -> None:
        connection.close()
        vendor_name = (
            os.path.join(tempfile.gettempdir(), f"{database}.sqlite3")
            if connection.vendor == "sqlite"
            else database
        )
        connection.settings_dict["NAME"] = vendor_name
        os.environ["BENCH_DB_NAME"] = database

    before = os.environ.get("BENCH_DB_NAME", "bgtask_bench")
    use(name)
    try:
        yield
    finally:
        use(before)


def scenario_history(size: int) -> float:
    """drain_2p, enqueue_single, the dashboard's data and a drain while
    prune_tasks runs, on a second database whose history holds --history
    finished tasks (loaded once per run)."""
    from django.core.management import call_command
    from django.db import connections
    from django.db.models import Max
    from django.utils import timezone

    from background_task.models import CompletedTask, Task
    from background_task.web import dashboard

    name = os.environ.get("BENCH_DB_NAME", "bgtask_bench") + "_history"
    if not OPTIONS.get("history_loaded"):
        if not (OPTIONS["reuse_history"] and history_exists(name)):
            create_database(name)
        with on_database(name):
            call_command("migrate", verbosity=0)
            if not CompletedTask.objects.exists():
                load_history(OPTIONS["history"])
        OPTIONS["history_loaded"] = True
    with on_database(name):
        loaded = CompletedTask.objects.aggregate(last=Max("pk"))["last"] or 0

        def clean() -> None:
            Task.objects.all().delete()
            CompletedTask.objects.filter(pk__gt=loaded).delete()

        clean()
        EXTRA["history_enqueue"].append(scenario_enqueue_single(size))
        clean()
        enqueue_noops(size)
        analyze()
        run_workers(2)
        rate = drained_rate(size, after_pk=loaded)
        clean()
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            dashboard.collect(timezone.now())
            timings.append((time.perf_counter() - started) * 1000)
        EXTRA["history_dashboard"].append(statistics.median(timings))
        enqueue_noops(size)
        analyze()
        before = CompletedTask.objects.filter(pk__lte=loaded).count()
        oldest = CompletedTask.objects.order_by("pk").values_list("pk", flat=True).first()
        connections.close_all()
        pruning_since = time.monotonic()
        command = ["prune_tasks", "--older-than", "1d", "--pause", str(OPTIONS["prune_pause"])]
        pruner = subprocess.Popen(
            [sys.executable, "-m", "django", *command],
            env=worker_env(),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        try:
            # It counts what it will delete first: start once it deletes.
            while CompletedTask.objects.filter(pk=oldest).exists():
                if pruner.poll() is not None:
                    raise RuntimeError("prune_tasks ended before deleting anything")
                time.sleep(0.05)
            run_workers(2)
        finally:
            pruner.terminate()
            pruner.wait(60)
        pruning_span = time.monotonic() - pruning_since
        EXTRA["history_pruning"].append(drained_rate(size, after_pk=loaded))
        pruned = before - CompletedTask.objects.filter(pk__lte=loaded).count()
        EXTRA["history_pruned"].append(pruned / pruning_span)
        clean()
    return rate


EXTRA: dict[str, list[float]] = {
    "history_enqueue": [],
    "history_dashboard": [],
    "history_pruning": [],
    "history_pruned": [],
    "worker_rss": [],
    "latency_p95": [],
    "latency_call_p50": [],
    "idle_cpu": [],
    "drain_rated_peak": [],
    "drain_rated_1000_peak": [],
    "async_rss": [],
    "fanout_start": [],
    "fanout_callback": [],
}
for _steady in sorted(OPT_IN):
    for _suffix in STEADY_FIGURES:
        EXTRA[f"{_steady}_{_suffix}"] = []
OPTIONS: dict[str, Any] = {}


def child(args: argparse.Namespace) -> int:
    setup_django()
    OPTIONS.update(
        steady_seconds=args.steady_seconds,
        history=args.history,
        reuse_history=args.reuse_history,
        prune_pause=args.prune_pause,
        steady_producers=args.steady_producers,
        steady_batch=args.steady_batch,
        backlog=args.backlog,
        latency_samples=args.latency_samples,
        idle_seconds=args.idle_seconds,
    )
    scenarios: dict[str, Callable[[int], float]] = {
        "raw_insert": scenario_raw_insert,
        "raw_bulk": scenario_raw_bulk,
        "enqueue_single": scenario_enqueue_single,
        "enqueue_bulk": scenario_enqueue_bulk,
        "raw_claim": scenario_raw_claim,
        "drain_1p": make_drain(1),
        "drain_2p": make_drain(2),
        "drain_io": scenario_drain_io,
        "drain_limited": scenario_drain_limited,
        "drain_rated": make_drain_rated(
            200, "noop_rated", lambda size: max(size // 5, 400), "drain_rated_peak"
        ),
        "drain_rated_1000": make_drain_rated(
            1000, "noop_rated_1000", lambda size: max(size + 1000, 2000), "drain_rated_1000_peak"
        ),
        "drain_async": make_drain_async(1),
        "drain_async_2p": make_drain_async(2),
        "backlog_drain": scenario_backlog_drain,
        "latency_p50": scenario_latency,
        "steady_50": make_steady("steady_50", fraction=0.5),
        "steady_80": make_steady("steady_80", fraction=0.8),
        "steady_1500": make_steady("steady_1500", rate=1500.0, processes=1, producers=1),
        "history": scenario_history,
        "fanout": scenario_fanout,
    }
    only = set(args.only.split(",")) if args.only else None
    results: dict[str, list[float]] = {}
    OPTIONS["results"] = results  # the steady scenarios read drain_2p's figure
    chosen = {
        name: run
        for name, run in scenarios.items()
        if (not only and name not in OPT_IN) or (only and name in only)
    }
    # Rounds of every scenario rather than all repetitions of one: a machine
    # that slows down for a while then weighs on a scenario and its raw-SQL
    # reference alike, and the ratios stay fair.
    for _ in range(args.repeat):
        for name, scenario in chosen.items():
            reset()
            results.setdefault(name, []).append(scenario(args.size))
            print(
                f"   {os.environ['BENCH_DB']:<8} {name:<15} {results[name][-1]:,.1f}",
                file=sys.stderr,
                flush=True,
            )
    for name, values in EXTRA.items():
        if values:
            results[name] = values
    reset()
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
