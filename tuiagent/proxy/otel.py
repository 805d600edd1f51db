"""Live OpenTelemetry export of every proxied call: a span and metrics per call, sent to
the collector at OTEL_EXPORTER_OTLP_ENDPOINT through the official SDK's OTLP/HTTP exporter.

Optional: the SDK is the `tuiagent[otel]` extra. Span attributes are the report export's
(`tuiagent.report.otel.call_attributes`); metrics are the GenAI client ones
(`gen_ai.client.token.usage`, `gen_ai.client.operation.duration`) and `tuiagent.cost`.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING

import tuiagent
from tuiagent.report.otel import call_attributes
from tuiagent.runs.records import ProxyTurn, Record

if TYPE_CHECKING:
    from tuiagent.proxy.meter import Meter

INSTALL_HINT = (
    "tuiagent proxy: OTEL_EXPORTER_OTLP_ENDPOINT is set but the OpenTelemetry SDK is not "
    "installed; nothing is exported (install it with: pip install 'tuiagent[otel]')"
)
METRIC_INTERVAL_MS = 10_000


class LiveExport:
    """Subscribed to a Meter: each call record becomes a span and metric points."""

    def __init__(self, meter: Meter) -> None:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self._kind, self._status, self._error = SpanKind.CLIENT, Status, StatusCode.ERROR
        resource = Resource.create({"service.name": "tuiagent"})  # OTEL_SERVICE_NAME wins
        self.tracing = TracerProvider(resource=resource)
        self.tracing.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(), export_interval_millis=METRIC_INTERVAL_MS
        )
        self.metrics = MeterProvider(resource=resource, metric_readers=[reader])
        self.tracer = self.tracing.get_tracer("tuiagent", tuiagent.__version__)
        otel_meter = self.metrics.get_meter("tuiagent", tuiagent.__version__)
        self.tokens = otel_meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", description="tokens per call"
        )
        self.duration = otel_meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", description="time per call"
        )
        self.cost = otel_meter.create_counter(
            "tuiagent.cost", unit="USD", description="what the calls billed"
        )
        self.run_id = meter.run_id
        meter.listeners.append(self.on_record)

    def on_record(self, record: Record) -> None:
        if not isinstance(record, ProxyTurn):
            return
        # The report's span attributes, from the record's line (report/otel.py reads lines).
        line = record.to_json()
        attrs = {
            k: v for k, v in call_attributes(line, self.run_id, False).items() if v is not None
        }
        end = time.time_ns()
        start = end - int(record.latency_s * 1e9)
        span = self.tracer.start_span(
            f"chat {record.model}", kind=self._kind, start_time=start, attributes=attrs
        )
        if record.type == "attempt":
            span.set_status(self._status(self._error, record.error or ""))
        span.end(end_time=end)
        point = {
            k: attrs[k]
            for k in ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model")
        }
        if "error.type" in attrs:
            point["error.type"] = attrs["error.type"]
        self.tokens.record(
            attrs["gen_ai.usage.input_tokens"], {**point, "gen_ai.token.type": "input"}
        )
        self.tokens.record(
            attrs["gen_ai.usage.output_tokens"], {**point, "gen_ai.token.type": "output"}
        )
        self.duration.record((end - start) / 1e9, point)
        self.cost.add(attrs["tuiagent.cost_usd"], point)

    def flush(self) -> None:
        self.tracing.force_flush()
        self.metrics.force_flush()

    def shutdown(self) -> None:
        self.tracing.shutdown()
        self.metrics.shutdown()


def live_export(meter: Meter) -> LiveExport | None:
    """The export when OTEL_EXPORTER_OTLP_ENDPOINT is set; without the SDK, one line says
    how to install it."""
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    try:
        return LiveExport(meter)
    except ImportError:
        print(INSTALL_HINT, file=sys.stderr)
        return None
