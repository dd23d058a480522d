"""OpenTelemetry: producer spans where tasks are queued, consumer spans in
real worker processes, in the same trace; exported by the SDK (in memory in
this process, to a file from the workers). Needs opentelemetry-sdk
(installed by ``make test``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from background_task import status
from background_task.api.registry import Tasks
from background_task.contrib.otel import Tracing
from background_task.core import instruments
from background_task.models import CompletedTask, Task
from background_task.runtime import scheduler
from tests.conftest import subprocess_env
from tests.testapp import tasks as fixtures

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def exporter():
    """An in-memory exporter behind a Tracing instrument of its own provider."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracing = instruments.install(Tracing(provider))
    memory.tracer = provider.get_tracer("tests")
    yield memory
    instruments.uninstall(tracing)


def _hex(number: int, width: int) -> str:
    return f"0x{number:0{width}x}"


def _spans_in(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_runs_in_a_worker_process_join_the_trace_that_queued_them(exporter, start_worker, tmp_path):
    with exporter.tracer.start_as_current_span("request") as request:
        ok = fixtures.traced_inner("sync")
        coroutine = fixtures.async_traced_inner("async")
        bad = fixtures.fail("traced failure")
    trace_id = request.get_span_context().trace_id
    producers = [span for span in exporter.get_finished_spans() if span.name.startswith("send")]
    assert len(producers) == 3
    for span in producers:
        assert span.kind == trace.SpanKind.PRODUCER
        assert span.context.trace_id == trace_id and span.parent.span_id == request.context.span_id
    by_id = {span.attributes["messaging.message.id"]: span for span in producers}
    assert by_id[ok.task_id].attributes["messaging.system"] == "background_task"
    assert by_id[ok.task_id].attributes["messaging.operation.type"] == "send"
    assert (
        by_id[ok.task_id].attributes["background_task.task_name"]
        == "tests.testapp.tasks.traced_inner"
    )
    assert by_id[bad.task_id].attributes["messaging.destination.name"] == "default"
    assert "traceparent" in Task.objects.get(pk=ok.pk).headers

    spans_file = tmp_path / "spans.jsonl"
    env = subprocess_env(
        DJANGO_SETTINGS_MODULE="tests.otel_settings", BGTASK_OTEL_SPANS=str(spans_file)
    )
    code, output = start_worker("--burst", env=env).wait(120)
    assert code == 0, output
    assert CompletedTask.objects.filter(status=status.DONE).count() == 2
    spans = _spans_in(spans_file)
    consumers = {
        span["attributes"]["messaging.message.id"]: span
        for span in spans
        if span["name"].startswith("process")
    }
    for task in (ok, coroutine, bad):
        span = consumers[task.task_id]
        assert span["kind"] == "SpanKind.CONSUMER"
        assert span["context"]["trace_id"] == _hex(trace_id, 32)
        assert span["parent_id"] == _hex(by_id[task.task_id].context.span_id, 16)
        assert span["attributes"]["messaging.operation.type"] == "process"
        assert span["attributes"]["background_task.attempt"] == 1
    assert consumers[ok.task_id]["attributes"]["background_task.outcome"] == "done"
    assert consumers[ok.task_id]["status"]["status_code"] == "UNSET"
    failed = consumers[bad.task_id]
    assert failed["attributes"]["background_task.outcome"] == "retry"
    assert failed["status"]["status_code"] == "ERROR"
    [event] = failed["events"]
    assert event["name"] == "exception"
    assert event["attributes"]["exception.message"] == "traced failure"
    # Spans the task's code starts are children of its run's span.
    inner = {span["name"]: span for span in spans if span["name"].startswith("inner")}
    assert inner["inner work"]["parent_id"] == consumers[ok.task_id]["context"]["span_id"]
    assert (
        inner["inner async work"]["parent_id"] == consumers[coroutine.task_id]["context"]["span_id"]
    )


def test_a_schedule_firing_starts_a_trace_of_its_own(exporter):
    registry = Tasks()
    registry.periodic_task(name="every-minute", seconds=60)(lambda: None)
    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    scheduler.sync(scheduler.definitions(registry), now)
    with exporter.tracer.start_as_current_span("unrelated"):
        assert scheduler.fire_due(registry, now + timedelta(seconds=60)) == 1
    task = Task.objects.get()
    assert task.headers is None
    span = Tracing(TracerProvider()).started(task, 1)
    assert span.parent is None  # a root span: a new trace
    span.end()


def test_nothing_is_recorded_without_a_configured_provider(clock):
    """Installed but not configured (the API's default provider): no headers."""
    unconfigured = instruments.install(Tracing())
    try:
        task = fixtures.noop()
    finally:
        instruments.uninstall(unconfigured)
    assert Task.objects.get(pk=task.pk).headers is None
