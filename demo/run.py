"""`make demo`: queue a realistic mix of tasks and drain them with the real worker.

Starts `manage.py process_tasks --workers 2 --threads 4` as a subprocess,
shows progress while it runs, stops it with SIGTERM when the queue is drained
and prints a summary.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
os.environ["DJANGO_SETTINGS_MODULE"] = "demo.settings"

import django  # noqa: E402

for name in ("db.sqlite3", "db.sqlite3-wal", "db.sqlite3-shm", "worker.log"):
    path = os.path.join(HERE, name)
    if os.path.exists(path):
        os.remove(path)
django.setup()

from django.core.management import call_command  # noqa: E402

from background_task.models import CompletedTask, Task  # noqa: E402
from demo.shop import tasks  # noqa: E402


def enqueue() -> int:
    count = 0
    for user in range(200):
        tasks.send_welcome_email(user, f"user{user}@example.com")
        count += 1
    for image in range(150):
        tasks.make_thumbnail(image, size=256, priority=2)
        count += 1
    for month in ("2026-08", "2026-09", "2026-10"):
        tasks.build_sales_report(month)
        count += 1
    for order in range(1000, 1010):
        tasks.sync_payment(order)
        count += 1
    for order in range(30):
        payload = {"order": order, "sku": f"SKU-{order}", "quantity": order % 4 + 1}
        if order % 10 == 0:
            del payload["sku"]  # bad input: fails for good, no retry
        tasks.import_order(payload)
        count += 1
    tasks.refresh_exchange_rates(repeat=2, verbose_name="exchange rates every 2s")
    return count


REPEATING = "demo.shop.tasks.refresh_exchange_rates"


def counts() -> dict[str, int]:
    """Progress of the one-off tasks (the repeating one is counted apart)."""
    history = CompletedTask.objects.exclude(task_name=REPEATING)
    queue = Task.objects.exclude(task_name=REPEATING)
    return {
        "done": history.filter(status="done").count(),
        "failed": history.filter(status="error").count(),
        "running": queue.filter(status="running").count(),
        "retrying": queue.filter(status="waiting", attempts__gt=0).count(),
        "left": queue.count(),
        "repeats": CompletedTask.objects.filter(task_name=REPEATING).count(),
    }


def main() -> int:
    print("Creating the demo database (SQLite) ...")
    call_command("migrate", verbosity=0)
    total = enqueue()
    print(f"Queued {total} tasks (+1 repeating every 2s) in 5 queues.")
    print("Starting: manage.py process_tasks --workers 2 --threads 4\n")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "django",
            "process_tasks",
            "--workers",
            "2",
            "--threads",
            "4",
            "--sleep",
            "0.2",
        ],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT),
    )
    started = time.monotonic()
    drained_at = None  # when every task had had its first attempt
    tty = sys.stdout.isatty()
    last_line = 0.0
    try:
        while True:
            time.sleep(0.25)
            c = counts()
            finished = c["done"] + c["failed"]
            elapsed = time.monotonic() - started
            if drained_at is None and finished + c["retrying"] >= total:
                drained_at = elapsed
            bar = "#" * int(30 * finished / total)
            line = (
                f"[{bar:<30}] {finished}/{total} finished | done {c['done']} "
                f"| failed {c['failed']} | retrying {c['retrying']} | running {c['running']} "
                f"| {elapsed:5.1f}s"
            )
            if tty:
                print("\r" + line, end="", flush=True)
            elif elapsed - last_line >= 1.0 or c["left"] == 0:
                print(line, flush=True)
                last_line = elapsed
            if c["left"] == 0:
                break
            if worker.poll() is not None:
                print("\nThe worker exited unexpectedly.")
                return 1
            if elapsed > 120:
                print("\nGave up waiting after 120s.")
                break
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    elapsed = time.monotonic() - started
    c = counts()
    retried = CompletedTask.objects.filter(status="done", attempts__gt=1).count()
    drain = drained_at or elapsed
    print("\n\nSummary")
    print(f"  done       {c['done']} (of which {retried} after a retry)")
    print(f"  failed     {c['failed']} (bad input, not retried)")
    print(
        f"  throughput {total / drain:.0f} tasks/s: first attempts of all {total} tasks in "
        f"{drain:.1f}s (2 processes x 4 threads, SQLite); retries waited out their backoff, "
        f"all finished after {elapsed:.1f}s"
    )
    print(f"  repeating  exchange rates ran {c['repeats']} time(s), every 2s")
    failure = CompletedTask.objects.filter(status="error").first()
    if failure:
        print(f"  a failure  {failure.task_name}: {failure.last_error.strip().splitlines()[-1]}")
    left = Task.objects.exclude(status="waiting").count()
    print(f"  tasks left locked after SIGTERM: {left}")
    print(f"\nWorker log: {os.path.join(HERE, 'worker.log')}")
    return 0 if left == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
