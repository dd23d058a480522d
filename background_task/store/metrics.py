"""Once-a-minute samples of the queue, the history behind the dashboard's charts.

Workers call :func:`take_sample` about once a minute; the first one to write
the current minute's :class:`~background_task.store.models.QueueSample` wins, the
others see the row and do nothing. So the cost of counting (the grouped
counts of :func:`~background_task.store.stats.queue_depths` and a range count of
the last minute's history) is paid once a minute in all, never per page
view, however many rows the tables hold.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, Q

from background_task.core import status
from background_task.store.models import CompletedTask, QueueSample
from background_task.store.routing import queue_alias
from background_task.store.stats import _queue_name, queue_depths

logger = logging.getLogger("background_task.metrics")

SAMPLE_INTERVAL = timedelta(minutes=1)
KEEP_SAMPLES = timedelta(days=7)


def minute_of(moment: datetime) -> datetime:
    """The start of the minute ``moment`` falls in."""
    return moment.replace(second=0, microsecond=0)


def measure(now: datetime, using: str | None = None) -> dict[str, Any]:
    """The sample for ``now``: depth now, and what finished in the minute before."""
    using = queue_alias(using)
    minute = minute_of(now)
    queues: dict[str, dict[str, Any]] = {
        name: {key: entry[key] for key in ("waiting", "due", "running")}
        for name, entry in queue_depths(now, using).items()
    }
    finished = CompletedTask.objects.using(using).filter(
        run_at__gte=minute - SAMPLE_INTERVAL, run_at__lt=minute
    )  # run_at is the finishing time in the history, and indexed
    counts = finished.values("queue").annotate(
        n=Count("id"), failed=Count("id", filter=Q(status=status.ERROR))
    )
    for row in counts.order_by():
        entry = queues.setdefault(_queue_name(row["queue"]), {"waiting": 0, "due": 0, "running": 0})
        entry["finished"], entry["failed"] = row["n"], row["failed"]
    for entry in queues.values():
        entry.setdefault("finished", 0)
        entry.setdefault("failed", 0)
    totals = {
        key: sum(entry[key] for entry in queues.values())
        for key in ("waiting", "due", "running", "finished", "failed")
    }
    return {"minute": minute, **totals, "queues": dict(sorted(queues.items()))}


def take_sample(now: datetime, using: str | None = None) -> bool:
    """Write this minute's sample unless another process has; prune old ones.

    Returns whether this call wrote it.
    """
    using = queue_alias(using)
    minute = minute_of(now)
    samples = QueueSample.objects.using(using)
    if samples.filter(minute=minute).exists():
        return False
    values = measure(now, using)
    try:
        with transaction.atomic(using=using):
            samples.create(**values)
    except IntegrityError:
        return False  # another worker wrote it first
    samples.filter(minute__lt=minute - KEEP_SAMPLES).delete()
    return True


def recent_samples(now: datetime, span: timedelta, using: str | None = None) -> list[QueueSample]:
    """The samples of the last ``span``, oldest first (at most one per minute)."""
    using = queue_alias(using)
    since = minute_of(now) - span
    return list(QueueSample.objects.using(using).filter(minute__gt=since).order_by("minute"))
