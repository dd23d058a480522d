"""Prometheus metrics: a live server's metrics view and real worker processes'
``--metrics-port`` endpoints, scraped over HTTP and parsed as the exposition
format. Needs prometheus-client (installed by ``make test``)."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from background_task import status
from background_task.contrib.prometheus import QueueCollector, TaskMetrics
from background_task.core import instruments
from background_task.models import CompletedTask, Task
from tests.conftest import drain, wait_until
from tests.testapp import tasks as fixtures

pytestmark = pytest.mark.django_db(transaction=True)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of an exposition."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive free TCP ports."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = probe.getsockname()[1]
        if first + count > 65535:
            continue
        try:
            held = []
            for port in range(first, first + count):
                taken = socket.socket()
                held.append(taken)
                taken.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for taken in held:
                taken.close()
        return first
    raise AssertionError("no free ports")


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain")
        return answer.read().decode()


@pytest.mark.parametrize("workers", [1, 2])
def test_worker_processes_serve_their_counters(start_worker, workers):
    port = free_ports(workers)
    for number in range(6):
        fixtures.record(f"m{number}")
    fixtures.fail("counted")
    worker = start_worker(
        "--sleep",
        "0.1",
        "--workers",
        str(workers),
        "--metrics-port",
        str(port),
        "--metrics-address",
        "127.0.0.1",
    )
    wait_until(lambda: CompletedTask.objects.filter(status=status.DONE).count() == 6, 60)
    wait_until(lambda: Task.objects.filter(attempts=1).exists(), 60)  # the failure, retried

    def totals() -> tuple[float, float, float, float]:
        started = succeeded = retried = count = 0.0
        for index in range(workers):
            found = samples(scrape(f"http://127.0.0.1:{port + index}/metrics"))
            name = "tests.testapp.tasks.record"
            started += value(
                found, "background_task_tasks_started_total", task_name=name, queue="records"
            )
            succeeded += value(
                found, "background_task_tasks_succeeded_total", task_name=name, queue="records"
            )
            retried += value(
                found,
                "background_task_tasks_retried_total",
                task_name="tests.testapp.tasks.fail",
                queue="default",
            )
            count += value(
                found,
                "background_task_task_duration_seconds_count",
                task_name=name,
                queue="records",
            )
        return started, succeeded, retried, count

    wait_until(lambda: totals() == (6, 6, 1, 6), 30)
    worker.signal()
    assert worker.wait(60)[0] == 0


def test_the_view_serves_the_queue_gauges_to_whom_the_setting_allows(
    live_server, settings, start_worker, admin_user
):
    url = f"{live_server.url}/metrics/"
    with pytest.raises(urllib.error.HTTPError) as denied:
        scrape(url)
    assert denied.value.code == 401
    settings.BACKGROUND_TASK_METRICS_PERMISSION = "background_task.conf.anyone"
    for number in range(3):
        fixtures.sleep_for(0, key=f"w{number}")
    fixtures.record("paused one")
    from background_task import pause_queue

    pause_queue("records")
    found = samples(scrape(url))
    assert value(found, "background_task_queue_depth", queue="default", state="waiting") == 3
    assert value(found, "background_task_queue_depth", queue="default", state="due") == 3
    assert value(found, "background_task_queue_depth", queue="records", state="waiting") == 1
    assert value(found, "background_task_queue_paused", queue="records") == 1
    assert value(found, "background_task_workers", kind="worker", state="live") == 0
    # Queued in this process (the live server's): its own counter.
    assert (
        value(
            found,
            "background_task_tasks_queued_total",
            task_name="tests.testapp.tasks.sleep_for",
            queue="default",
        )
        >= 3
    )
    worker = start_worker("--sleep", "0.1")  # records is paused: it runs the default queue
    wait_until(
        lambda: (
            value(samples(scrape(url)), "background_task_workers", kind="worker", state="live") == 1
        ),
        60,
    )
    wait_until(
        lambda: (
            value(
                samples(scrape(url)),
                "background_task_queue_depth",
                queue="default",
                state="waiting",
            )
            == 0
        ),
        60,
    )
    found = samples(scrape(url))
    assert 0 <= value(found, "background_task_oldest_heartbeat_age_seconds") < 30
    worker.signal()
    assert worker.wait(60)[0] == 0


def test_a_project_registers_the_collector_and_the_counters_in_its_own_registry(clock):
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector())
    metrics = instruments.install(TaskMetrics(registry))
    try:
        fixtures.noop()
        fixtures.noop()
        before = samples(generate_latest(registry).decode())
        assert value(before, "background_task_queue_depth", queue="default", state="waiting") == 2
        name = "tests.testapp.tasks.noop"
        assert (
            value(before, "background_task_tasks_queued_total", task_name=name, queue="default")
            == 2
        )
        drain(clock)
        after = samples(generate_latest(registry).decode())
        assert (
            value(after, "background_task_tasks_succeeded_total", task_name=name, queue="default")
            == 2
        )
        assert value(after, "background_task_pickup_latency_seconds_count", queue="default") == 2
        assert value(after, "background_task_queue_depth", queue="default", state="waiting") == 0
    finally:
        instruments.uninstall(metrics)


def test_an_instrument_that_raises_changes_no_outcome(clock, caplog):
    class Broken(instruments.Instrument):
        def started(self, task, attempt):
            raise RuntimeError("instrument bug")

        def queued(self, tasks):
            raise RuntimeError("instrument bug")

    broken = instruments.install(Broken())
    try:
        task = fixtures.noop()
        drain(clock)
    finally:
        instruments.uninstall(broken)
    assert CompletedTask.objects.get(task_id=task.task_id).status == status.DONE
