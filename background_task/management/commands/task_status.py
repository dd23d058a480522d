"""``manage.py task_status``: queues, throughput, workers and schedules at a glance."""

from __future__ import annotations

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from background_task.store.stats import snapshot


class Command(BaseCommand):
    help = "Show queue depths, the age of the oldest due task, throughput, workers and schedules."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print JSON instead of text.")
        parser.add_argument(
            "--watch",
            type=float,
            metavar="SECONDS",
            help="Print again every SECONDS until interrupted.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        watch = options["watch"]
        if watch is not None and watch <= 0:
            raise CommandError("--watch needs a number of seconds > 0.")
        try:
            while True:
                data = snapshot(timezone.now())
                if options["json"]:
                    self.stdout.write(json.dumps(data, indent=2))
                else:
                    if watch:
                        self.stdout.write("\x1b[2J\x1b[H", ending="")  # clear the terminal
                    self.stdout.write(render(data))
                if not watch:
                    return
                time.sleep(watch)
        except KeyboardInterrupt:
            return


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    return lines


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _progress(progress: dict[str, Any] | None) -> str:
    if progress is None:
        return "-"
    done = f"{progress['done']:g}" + (f"/{progress['total']:g}" if progress["total"] else "")
    percent = f" ({progress['percent']:g}%)" if progress["percent"] is not None else ""
    message = f" {progress['message']}" if progress["message"] else ""
    return done + percent + message


def render(data: dict[str, Any]) -> str:
    """The snapshot as text."""
    lines = [f"Queues at {data['at']}:"]
    rows = [
        [
            name + (" (paused)" if q.get("paused") else ""),
            str(q["waiting"]),
            str(q["due"]),
            str(q["running"]),
            str(q.get("blocked", 0)),
            _age(q["oldest_due_seconds"]),
            str(q["failed_last_hour"]),
        ]
        for name, q in data["queues"].items()
    ]
    if rows:
        headers = ["queue", "waiting", "due", "running", "blocked", "oldest due", "failed (1h)"]
        lines += ["  " + line for line in _table(headers, rows)]
    else:
        lines.append("  (no tasks queued)")
    for paused in data.get("paused_queues", []):
        reason = f": {paused['reason']}" if paused["reason"] else ""
        lines.append(
            f"Paused: {paused['queue'] or '<default>'} since {paused['paused_at']}{reason}"
        )
    lines.append(
        f"Finished: {data['finished_last_minute']} in the last minute, "
        f"{data['finished_last_hour']} in the last hour"
    )
    workers = data["workers"]
    live = sum(1 for w in workers if not w["lost"])
    lines.append(
        f"Workers: {live} live" + (f", {len(workers) - live} lost" if live < len(workers) else "")
    )
    worker_rows = [
        [
            w["worker_id"],
            w["kind"],
            _age(w["heartbeat_age_seconds"]) + (" (lost)" if w["lost"] else ""),
            str(w["running"]),
            "all" if w["queues"] is None else ",".join(q or "<default>" for q in w["queues"]),
        ]
        for w in workers
    ]
    if worker_rows:
        headers = ["worker", "kind", "heartbeat", "running", "queues"]
        lines += ["  " + line for line in _table(headers, worker_rows)]
    flows = data.get("workflows")
    if flows:
        lines.append(
            f"Workflows: {flows['started']} running; in the last hour {flows['done_last_hour']} "
            f"done, {flows['failed_last_hour']} failed, {flows['cancelled_last_hour']} cancelled"
        )
    running = data.get("running_tasks", [])
    if running:
        lines.append("Running (longest first):")
        running_rows = [
            [
                r["task_id"],
                r["task_name"],
                _age(r["running_seconds"]),
                _progress(r["progress"]),
            ]
            for r in running
        ]
        lines += [
            "  " + line for line in _table(["task", "name", "running", "progress"], running_rows)
        ]
    schedules = data["schedules"]
    if schedules:
        lines.append("Schedules:")
        schedule_rows = [
            [s["name"], s["expression"], s["next_run_at"] or "-", "on" if s["enabled"] else "off"]
            for s in schedules
        ]
        lines += [
            "  " + line
            for line in _table(["name", "expression", "next run", "enabled"], schedule_rows)
        ]
    return "\n".join(lines)
