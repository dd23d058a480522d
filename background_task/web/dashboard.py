"""What the admin dashboard shows, gathered with bounded queries.

Nothing here counts a whole table on a page view:

- queue depths come from the latest once-a-minute sample
  (:mod:`background_task.store.metrics`), counted live only when no worker has
  written one in the last two minutes;
- per-task statistics are computed over the latest ``STATS_ROWS`` finished
  runs of the chosen window (an index range on the history's ``run_at``);
- recent failures are the newest few by the indexed ``failed_at``;
- charts read at most one sample per minute of the window.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from background_task.core import status
from background_task.store import metrics, stats
from background_task.store.models import CompletedTask, QueueSample
from background_task.store.routing import queue_alias
from background_task.web.charts import Series, line_chart

STATS_ROWS = 10_000  # finished runs the per-task statistics look at, newest first
FAILURES_SHOWN = 10
CHART_POINTS = 240  # samples are merged into at most this many points
WINDOWS = {
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
}
DEFAULT_WINDOW = "24h"


@dataclass(frozen=True)
class TaskStats:
    """How one task name fared in the runs looked at."""

    name: str
    runs: int
    failures: int
    mean_seconds: float | None
    p95_seconds: float | None

    @property
    def failure_rate(self) -> float:
        return self.failures / self.runs if self.runs else 0.0


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of already sorted values (not empty)."""
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def task_statistics(
    runs: Iterable[tuple[str, str, datetime | None, datetime | None]],
) -> list[TaskStats]:
    """Per task name: runs, failures, mean and p95 duration, busiest first.

    ``runs`` are (task name, status, started_at, finished_at); a run without
    both times (a 1.2.8 row, say) counts, but has no duration.
    """
    by_name: dict[str, tuple[list[int], list[float]]] = {}
    for name, outcome, started, finished in runs:
        counts, durations = by_name.setdefault(name, ([0, 0], []))
        counts[0] += 1
        if outcome == status.ERROR:
            counts[1] += 1
        if started is not None and finished is not None:
            durations.append(max((finished - started).total_seconds(), 0.0))
    result = []
    for name, (counts, durations) in by_name.items():
        durations.sort()
        result.append(
            TaskStats(
                name=name,
                runs=counts[0],
                failures=counts[1],
                mean_seconds=sum(durations) / len(durations) if durations else None,
                p95_seconds=percentile(durations, 0.95) if durations else None,
            )
        )
    return sorted(result, key=lambda entry: (-entry.runs, entry.name))


@dataclass(frozen=True)
class Point:
    """Samples merged into one chart point: rates per minute, the largest depths."""

    minute: datetime
    finished: float
    failed: float
    waiting: int
    due: int
    running: int


def merge_samples(samples: Sequence[QueueSample], max_points: int) -> tuple[list[Point], int]:
    """Merge consecutive samples so that at most ``max_points`` remain.

    Returns the points and how many minutes each covers.
    """
    if not samples:
        return [], 1
    first, last = samples[0].minute, samples[-1].minute
    minutes = int((last - first).total_seconds() // 60) + 1
    per_point = max(1, math.ceil(minutes / max_points))
    buckets: dict[int, list[QueueSample]] = {}
    for sample in samples:
        index = int((sample.minute - first).total_seconds() // 60) // per_point
        buckets.setdefault(index, []).append(sample)
    points = []
    for index in sorted(buckets):
        group = buckets[index]
        points.append(
            Point(
                minute=first + timedelta(minutes=index * per_point),
                finished=sum(s.finished for s in group) / len(group),
                failed=sum(s.failed for s in group) / len(group),
                waiting=max(s.waiting for s in group),
                due=max(s.due for s in group),
                running=max(s.running for s in group),
            )
        )
    return points, per_point


def charts(samples: Sequence[QueueSample]) -> dict[str, str]:
    """The throughput and queue-depth charts of these samples."""
    points, per_point = merge_samples(samples, CHART_POINTS)
    times = [point.minute for point in points]
    gap = timedelta(minutes=2 * per_point)
    return {
        "throughput": line_chart(
            times,
            [
                Series("finished", "#417690", [p.finished for p in points]),
                Series("failed", "#ba2121", [p.failed for p in points]),
            ],
            title="Tasks finished per minute",
            gap=gap,
        ),
        "depth": line_chart(
            times,
            [
                Series("due", "#e0a800", [p.due for p in points]),
                Series("waiting", "#79aec8", [p.waiting for p in points]),
                Series("running", "#5b8c5a", [p.running for p in points]),
            ],
            title="Queue depth",
            gap=gap,
        ),
    }


def collect(
    now: datetime, window: str = DEFAULT_WINDOW, using: str | None = None
) -> dict[str, Any]:
    """Everything the dashboard page shows, for the window named ``window``."""
    using = queue_alias(using)
    span = WINDOWS[window]
    history = CompletedTask.objects.using(using)
    latest = QueueSample.objects.using(using).order_by("-minute").first()
    if latest is not None and now - latest.minute <= 2 * metrics.SAMPLE_INTERVAL:
        depth = {"at": latest.minute, "live": False, **_depth_of(latest)}
    else:  # no worker is sampling: count now (the page says so)
        measured = metrics.measure(now, using)
        depth = {"at": now, "live": True, **measured}
    runs = list(
        history.filter(run_at__gte=now - span)
        .order_by("-run_at")
        .values_list("task_name", "status", "started_at", "finished_at")[:STATS_ROWS]
    )
    failures = list(
        history.filter(failed_at__isnull=False, status=status.ERROR).order_by("-failed_at")[
            :FAILURES_SHOWN
        ]
    )
    samples = metrics.recent_samples(now, span, using)
    return {
        "now": now,
        "window": window,
        "windows": list(WINDOWS),
        "depth": depth,
        "queues": sorted(depth["queues"].items()),
        "paused": stats.paused_queues(using),
        "task_stats": task_statistics(runs),
        "runs_looked_at": len(runs),
        "runs_capped": len(runs) == STATS_ROWS,
        "failures": failures,
        "workers": stats.workers(now, using),
        "running": stats.running_tasks(now, using),
        "schedules": stats.schedules(using)[:20],
        "charts": charts(samples),
    }


def _depth_of(sample: QueueSample) -> dict[str, Any]:
    return {
        key: getattr(sample, key) for key in ("waiting", "due", "running", "finished", "failed")
    } | {"queues": sample.queues}
