"""What is happening in the queue: counts, ages, throughput, workers, schedules.

One function, :func:`snapshot`, reads everything a status view needs with a
handful of aggregate queries (no row is loaded per task); ``manage.py
task_status`` prints it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Min, Q

from background_task.core import status
from background_task.core.conf import app_settings
from background_task.store import pausing
from background_task.store.models import CompletedTask, Schedule, Task, WorkerProcess, Workflow
from background_task.store.models.workflow import STARTED
from background_task.store.routing import queue_alias


def _queue_name(queue: str | None) -> str:
    return queue if queue else "<default>"


def _empty_queue() -> dict[str, Any]:
    return {"waiting": 0, "due": 0, "running": 0, "blocked": 0, "oldest_due_seconds": None}


def queue_depths(now: datetime, using: str | None = None) -> dict[str, dict[str, Any]]:
    """Per queue: waiting, due and running tasks, and the age of the oldest due one.

    Two grouped counts over the task table (which holds only unfinished tasks).
    """
    using = queue_alias(using)
    pending = Task.objects.using(using)
    queues: dict[str, dict[str, Any]] = {}
    for row in pending.values("queue", "status").annotate(n=Count("id")).order_by():
        entry = queues.setdefault(_queue_name(row["queue"]), _empty_queue())
        if row["status"] in (status.WAITING, status.RUNNING, status.BLOCKED):
            entry[row["status"]] += row["n"]
    due = pending.filter(status=status.WAITING, run_at__lte=now)
    for row in due.values("queue").annotate(n=Count("id"), oldest=Min("run_at")).order_by():
        entry = queues.setdefault(_queue_name(row["queue"]), _empty_queue())
        entry["due"] = row["n"]
        entry["oldest_due_seconds"] = round((now - row["oldest"]).total_seconds(), 1)
    return queues


def snapshot(now: datetime, using: str | None = None) -> dict[str, Any]:
    """The state of the queue at ``now``, as JSON-friendly data."""
    using = queue_alias(using)
    history = CompletedTask.objects.using(using)
    queues = queue_depths(now, using)
    for entry in queues.values():
        entry["failed_last_hour"] = 0

    def queue(name: str | None) -> dict[str, Any]:
        return queues.setdefault(_queue_name(name), {**_empty_queue(), "failed_last_hour": 0})

    hour_ago, minute_ago = now - timedelta(hours=1), now - timedelta(minutes=1)
    # In the history, run_at is when the task finished (1.2.8's meaning), and indexed.
    failed = history.filter(status=status.ERROR, run_at__gte=hour_ago)
    for row in failed.values("queue").annotate(n=Count("id")).order_by():
        queue(row["queue"])["failed_last_hour"] = row["n"]
    finished = history.filter(run_at__gte=hour_ago).aggregate(
        hour=Count("id"), minute=Count("id", filter=Q(run_at__gte=minute_ago))
    )
    paused = paused_queues(using)
    for entry in queues.values():
        entry["paused"] = False
    for stopped in paused:
        queue(stopped["queue"])["paused"] = True
    return {
        "at": now.isoformat(),
        "queues": dict(sorted(queues.items())),
        "paused_queues": paused,
        "finished_last_minute": finished["minute"],
        "finished_last_hour": finished["hour"],
        "workers": workers(now, using),
        "running_tasks": running_tasks(now, using),
        "workflows": workflows(now, using),
        "schedules": schedules(using),
    }


def workflows(now: datetime, using: str | None = None) -> dict[str, int]:
    """Workflows still running, and those that finished in the last hour by outcome."""
    using = queue_alias(using)
    rows = Workflow.objects.using(using)
    found = {"started": rows.filter(status=STARTED).count()}
    recent = (
        rows.filter(finished_at__gte=now - timedelta(hours=1))
        .values("status")
        .annotate(n=Count("id"))
        .order_by()
    )
    for outcome in ("done", "failed", "cancelled"):
        found[f"{outcome}_last_hour"] = 0
    for row in recent:
        found[f"{row['status']}_last_hour"] = row["n"]
    return found


RUNNING_SHOWN = 20  # running tasks a snapshot lists, the longest-running first


def running_tasks(
    now: datetime, using: str | None = None, limit: int = RUNNING_SHOWN
) -> list[dict[str, Any]]:
    """The longest-running ``limit`` tasks, with what they reported."""
    using = queue_alias(using)
    rows = (
        Task.objects.using(using)
        .filter(status=status.RUNNING)
        .order_by("locked_at")
        .only(
            "task_id",
            "task_name",
            "queue",
            "locked_by",
            "locked_at",
            "last_attempted_at",
            "attempts",
            "progress_json",
        )[:limit]
    )
    found = []
    for task in rows:
        since = task.last_attempted_at or task.locked_at
        progress = task.progress
        found.append(
            {
                "task_id": task.task_id,
                "task_name": task.task_name,
                "queue": task.queue,
                "worker_id": task.locked_by,
                "attempt": task.attempts + 1,
                "running_seconds": (
                    round((now - since).total_seconds(), 1) if since is not None else None
                ),
                "progress": progress.describe() if progress is not None else None,
            }
        )
    return found


def paused_queues(using: str | None = None) -> list[dict[str, Any]]:
    """The paused queues (``queue`` None: the default one), when and why."""
    using = queue_alias(using)
    return [
        {"queue": row.name, "paused_at": row.paused_at.isoformat(), "reason": row.reason}
        for row in pausing.paused(using)
    ]


def workers(now: datetime, using: str | None = None) -> list[dict[str, Any]]:
    """Registered worker and supervisor processes, their heartbeat age and load."""
    using = queue_alias(using)
    running_by_worker = dict(
        Task.objects.using(using)
        .filter(status=status.RUNNING)
        .values_list("locked_by")
        .annotate(n=Count("id"))
        .order_by()
    )
    lost_after = app_settings.WORKER_LOST_AFTER
    return [
        {
            "worker_id": worker.worker_id,
            "kind": worker.kind,
            "host": worker.host,
            "pid": worker.pid,
            "queues": worker.queues,
            "heartbeat_age_seconds": round((now - worker.heartbeat_at).total_seconds(), 1),
            "lost": (now - worker.heartbeat_at).total_seconds() > lost_after,
            "running": running_by_worker.get(worker.worker_id, 0),
        }
        for worker in WorkerProcess.objects.using(using).order_by("host", "pid")
    ]


def schedules(using: str | None = None) -> list[dict[str, Any]]:
    """Defined schedules, the next due first."""
    using = queue_alias(using)
    return [
        {
            "name": schedule.name,
            "expression": schedule.expression,
            "next_run_at": schedule.next_run_at.isoformat() if schedule.next_run_at else None,
            "enabled": schedule.enabled,
        }
        for schedule in Schedule.objects.using(using).filter(defined=True).order_by("next_run_at")
    ]
