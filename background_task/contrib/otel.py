"""OpenTelemetry traces (the ``[otel]`` extra: ``opentelemetry-api``).

Installed when Django starts if ``opentelemetry-api`` can be imported (see
BACKGROUND_TASK_INSTRUMENTS). With a tracer provider configured by the
project, queueing a task records a ``send <queue>`` span (kind PRODUCER)
and stores its context in the task's ``headers``; each run records a
``process <queue>`` span (kind CONSUMER) whose parent is that context, so a
request and the tasks it queued share one trace. The run's span is the
current span while the task's code runs, in threads and on the event loop,
so spans the code starts are its children. A schedule's firing has no
producer and starts a trace of its own.

Attributes follow OpenTelemetry's messaging semantic conventions
(``messaging.system`` = ``background_task``, ``messaging.operation.type``,
``messaging.operation.name``, ``messaging.destination.name`` = the queue,
``messaging.message.id`` = the task id), plus ``background_task.task_name``,
``background_task.attempt`` and ``background_task.outcome``. A failed
attempt is recorded as an exception event and an error status.

Without a configured provider the API's spans record nothing; without the
library nothing of this module runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

try:
    from opentelemetry import context, propagate, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "background_task.contrib.otel needs opentelemetry-api: "
        "pip install 'django-background-task[otel]'."
    ) from exc

from background_task.core.instruments import SKIP, Instrument, Leave
from background_task.core.version import __version__

SYSTEM = "background_task"
#: Outcomes that end a run's span with an error status.
FAILED = ("retry", "failed", "lost")


def _queue(name: str | None) -> str:
    return name or "default"


def _attributes(task: Any, operation: str) -> dict[str, Any]:
    return {
        "messaging.system": SYSTEM,
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
        "messaging.destination.name": _queue(task.queue),
        "messaging.message.id": task.task_id,
        "background_task.task_name": task.task_name,
    }


class Tracing(Instrument):
    """Producer spans for queued tasks, consumer spans for their runs."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.tracer_provider = tracer_provider

    @property
    def tracer(self) -> trace.Tracer:
        # Asked for at each use: a provider configured after Django started
        # (the SDK set up in a worker's startup) is still used.
        return trace.get_tracer(
            "background_task", __version__, tracer_provider=self.tracer_provider
        )

    def configured(self) -> bool:
        """False while no tracer provider is set (the API's placeholder, or
        its no-op one): then nothing is recorded and nothing is started."""
        provider = self.tracer_provider or trace.get_tracer_provider()
        return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)

    def headers(self, task: Any) -> Mapping[str, str] | None:
        if not self.configured():
            return None
        span = self.tracer.start_span(
            f"send {_queue(task.queue)}",
            kind=SpanKind.PRODUCER,
            attributes=_attributes(task, "send"),
        )
        if not span.is_recording():
            span.end()
            return None
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        span.end()
        return carrier or None

    def started(self, task: Any, attempt: int) -> Any:
        if not self.configured():
            return SKIP
        headers = task.headers
        # No producer (a schedule's firing, or a task queued untraced): a new trace.
        parent = propagate.extract(headers) if headers else context.Context()
        attributes = _attributes(task, "process")
        attributes["background_task.attempt"] = attempt
        return self.tracer.start_span(
            f"process {_queue(task.queue)}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        )

    def entered(self, state: Any) -> Leave | None:
        token = context.attach(trace.set_span_in_context(state))
        return lambda: context.detach(token)

    def finished(
        self,
        state: Any,
        task: Any,
        attempt: int,
        outcome: str,
        duration: float,
        error: BaseException | None,
    ) -> None:
        span = state
        span.set_attribute("background_task.outcome", outcome)
        if error is not None:
            span.record_exception(error)
        if outcome in FAILED or error is not None:
            span.set_status(Status(StatusCode.ERROR, type(error).__name__ if error else outcome))
        span.end()


_default: Tracing | None = None


def default_tracing() -> Tracing:
    """The process's :class:`Tracing` on the global tracer provider (made once)."""
    global _default
    if _default is None:
        _default = Tracing()
    return _default
