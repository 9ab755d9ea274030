"""OpenTelemetry tracing: W3C ``traceparent`` honoured on every request; spans exported over
OTLP/HTTP only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (otherwise they only lend their
trace ids to the logs)."""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["PROPAGATOR", "tracer"]

PROPAGATOR = TraceContextTextMapPropagator()


def tracer(zone: str, replica: str, service: str = "agentmesh") -> trace.Tracer:
    resource = Resource.create(
        {
            "service.name": service,
            "service.instance.id": f"{zone}/{replica}",
            "cloud.availability_zone": zone,
        }
    )
    provider = TracerProvider(resource=resource)
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider.get_tracer("mesh")
