"""Test settings whose worker processes export OpenTelemetry spans, one JSON
object per line, to the file BGTASK_OTEL_SPANS names (the OpenTelemetry SDK's
console exporter writing to that file)."""

import json
import os

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

from tests.settings import *  # noqa: F403

_spans = open(os.environ["BGTASK_OTEL_SPANS"], "a", buffering=1)  # noqa: SIM115
_provider = TracerProvider()
_provider.add_span_processor(
    SimpleSpanProcessor(
        ConsoleSpanExporter(
            out=_spans, formatter=lambda span: json.dumps(json.loads(span.to_json())) + "\n"
        )
    )
)
trace.set_tracer_provider(_provider)
