"""Prometheus metrics (the ``[prometheus]`` extra: ``prometheus-client``).

Two kinds of metric, with the ``background_task_`` prefix:

- **Counters and histograms of this process** (:class:`TaskMetrics`, an
  instrument installed when Django starts): tasks queued, started,
  succeeded, retried, failed and cancelled, by task name and queue; run
  duration by task name and queue; pick-up latency (from due to started)
  by queue. A web process counts what it queues, a worker process what it
  runs: each process has its own, as always with Prometheus clients.
  ``process_tasks --metrics-port PORT`` serves each worker process's on
  ``PORT + n`` (n = 0 to ``--workers`` - 1); with ``PROMETHEUS_MULTIPROC_DIR``
  set, the processes of one host share them through that directory.
- **Gauges read from the database at scrape time** (:class:`QueueCollector`):
  queue depth by queue and state, the age of the oldest due task, running
  tasks, live and lost workers, the oldest heartbeat's age, paused queues.
  The database is the shared truth, so one scrape sees every host's
  workers; the queries are a few grouped counts over the task table (which
  holds unfinished tasks only) and a read of the worker rows.

:func:`metrics_view` serves both (mount it with ``path("metrics/",
metrics_view)``; BACKGROUND_TASK_METRICS_PERMISSION decides who may read
it). A project that already exposes an endpoint registers the collector in
its own registry: ``REGISTRY.register(QueueCollector())``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

try:
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        REGISTRY,
        CollectorRegistry,
        Counter,
        Histogram,
        generate_latest,
        start_http_server,
    )
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "background_task.contrib.prometheus needs prometheus-client: "
        "pip install 'django-background-task[prometheus]'."
    ) from exc

from background_task.core.conf import app_settings
from background_task.core.instruments import Instrument
from background_task.store import stats
from background_task.store.routing import queue_alias

PREFIX = "background_task_"
#: Buckets (seconds) of the duration and pick-up latency histograms.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
OUTCOME_COUNTERS = {
    "done": "succeeded",
    "retry": "retried",
    "failed": "failed",
    "cancelled": "cancelled",
}


KINDS = ("worker", "supervisor")  # of registered processes (WorkerProcess.kind)


def _queue(name: str | None) -> str:
    return name or "default"


@dataclass(frozen=True)
class _Children:
    """One task name's (and queue's) labelled metrics, looked up once."""

    started: Any
    duration: Any
    outcomes: dict[str, Any]
    pickup: Any


class TaskMetrics(Instrument):
    """Counts and times this process's tasks (see the module docstring)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        labels = ("task_name", "queue")

        def counter(name: str, text: str) -> Counter:
            return Counter(f"{PREFIX}tasks_{name}", text, labels, registry=registry)

        self.queued_total = counter("queued", "Tasks queued by this process.")
        self.started_total = counter("started", "Task runs started by this process.")
        self.outcomes = {
            outcome: counter(name, f"Task runs that ended {outcome!r} in this process.")
            for outcome, name in OUTCOME_COUNTERS.items()
        }
        self.duration = Histogram(
            f"{PREFIX}task_duration_seconds",
            "How long task runs took, in seconds.",
            labels,
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.pickup_latency = Histogram(
            f"{PREFIX}pickup_latency_seconds",
            "Seconds from when a task was due to when its run started.",
            ("queue",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._by_task: dict[tuple[str, str], _Children] = {}

    def _children(self, name: str, queue: str) -> _Children:
        found = self._by_task.get((name, queue))
        if found is None:
            found = self._by_task[(name, queue)] = _Children(
                self.started_total.labels(name, queue),
                self.duration.labels(name, queue),
                {
                    outcome: counter.labels(name, queue)
                    for outcome, counter in self.outcomes.items()
                },
                self.pickup_latency.labels(queue),
            )
        return found

    def queued(self, tasks: Iterable[Any]) -> None:
        counts: dict[tuple[str, str], int] = {}
        for task in tasks:
            key = (task.task_name, _queue(task.queue))
            counts[key] = counts.get(key, 0) + 1
        for (name, queue), count in counts.items():
            self.queued_total.labels(name, queue).inc(count)

    def started(self, task: Any, attempt: int) -> Any:
        children = self._children(task.task_name, _queue(task.queue))
        children.started.inc()
        if task.run_at is not None:
            late = time.time() - task.run_at.timestamp()
            children.pickup.observe(late if late > 0.0 else 0.0)
        return children

    def finished(
        self,
        state: Any,
        task: Any,
        attempt: int,
        outcome: str,
        duration: float,
        error: BaseException | None,
    ) -> None:
        counter = state.outcomes.get(outcome)
        if counter is not None:
            counter.inc()
        state.duration.observe(duration)


_default: TaskMetrics | None = None
_default_lock = threading.Lock()


def default_metrics() -> TaskMetrics:
    """The process's :class:`TaskMetrics` on the default registry (made once)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = TaskMetrics()
        return _default


class QueueCollector(Collector):
    """Gauges read from the queue's database at each scrape (see the module docstring)."""

    def __init__(self, using: str | None = None) -> None:
        self.using = using

    def describe(self) -> list[Any]:
        return []  # read at scrape time only: never while being registered

    def collect(self) -> Iterator[GaugeMetricFamily]:
        using = queue_alias(self.using)
        now = timezone.now()
        depths = stats.queue_depths(now, using)
        depth = GaugeMetricFamily(
            f"{PREFIX}queue_depth", "Tasks in the queue, by state.", labels=["queue", "state"]
        )
        oldest = GaugeMetricFamily(
            f"{PREFIX}oldest_due_age_seconds",
            "Age of the oldest task that is due and waiting.",
            labels=["queue"],
        )
        running = 0
        for name, entry in sorted(depths.items()):
            queue = "default" if name == "<default>" else name
            for state in ("waiting", "due", "running", "blocked"):
                depth.add_metric([queue, state], entry[state])
            oldest.add_metric([queue], entry["oldest_due_seconds"] or 0.0)
            running += entry["running"]
        yield depth
        yield oldest
        yield GaugeMetricFamily(f"{PREFIX}running_tasks", "Tasks running now.", value=running)
        workers = stats.workers(now, using)
        registered = GaugeMetricFamily(
            f"{PREFIX}workers",
            "Registered processes (kind worker or supervisor), live or lost.",
            labels=["kind", "state"],
        )
        counts = {(kind, state): 0 for kind in KINDS for state in ("live", "lost")}
        for worker in workers:
            key = (worker["kind"], "lost" if worker["lost"] else "live")
            counts[key] = counts.get(key, 0) + 1
        for (kind, state), count in sorted(counts.items()):
            registered.add_metric([kind, state], count)
        yield registered
        ages = [w["heartbeat_age_seconds"] for w in workers if not w["lost"]]
        yield GaugeMetricFamily(
            f"{PREFIX}oldest_heartbeat_age_seconds",
            "Seconds since the live worker heard from longest ago sent its heartbeat.",
            value=max(ages) if ages else 0.0,
        )
        paused = GaugeMetricFamily(
            f"{PREFIX}queue_paused", "1 for each paused queue.", labels=["queue"]
        )
        for row in stats.paused_queues(using):
            paused.add_metric([_queue(row["queue"])], 1)
        yield paused


def _process_registry() -> CollectorRegistry:
    """This process's metrics, or with PROMETHEUS_MULTIPROC_DIR those of every
    process of the host that writes there."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def exposition(using: str | None = None) -> bytes:
    """The text exposition of the process's metrics and the queue's gauges."""
    queue = CollectorRegistry(auto_describe=False)
    queue.register(QueueCollector(using))
    return generate_latest(_process_registry()) + generate_latest(queue)


def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET``: the metrics in Prometheus' text format, for who
    BACKGROUND_TASK_METRICS_PERMISSION allows (staff by default)."""
    if request.method not in ("GET", "HEAD"):
        return HttpResponse("Only GET and HEAD.", status=405, content_type="text/plain")
    if not app_settings.METRICS_PERMISSION(request):
        user = getattr(request, "user", None)
        code = 403 if user is not None and user.is_authenticated else 401
        return HttpResponse("You may not read the metrics.", status=code, content_type="text/plain")
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)


def serve_process_metrics(port: int, addr: str = "0.0.0.0") -> None:
    """Serve this process's counters and histograms over HTTP (a worker's
    ``--metrics-port``); returns once the server's thread runs."""
    start_http_server(port, addr=addr, registry=_process_registry())
