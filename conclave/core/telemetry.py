"""OpenTelemetry for Conclave: one trace per run, across processes, with GenAI span names.

Spans: ``run {kind}`` (the run on its worker, a child of the submitting request through the trace
context stored with the run), ``invoke_agent {name}``, ``chat {model}`` (every metered model call,
with ``gen_ai.*`` request and usage attributes) and ``execute_tool {name}``. Message content is
recorded only when ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``.

Exporters follow the standard environment: ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``,
``none``) and ``OTEL_EXPORTER_OTLP_ENDPOINT``; with neither set, tracing is a no-op.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.propagate import extract, inject
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

__all__ = [
    "agent_span",
    "capture_content",
    "carrier",
    "model_span",
    "record_usage",
    "run_span",
    "setup_telemetry",
    "tool_span",
]

_lock = threading.Lock()
_configured = False
tracer = trace.get_tracer("conclave")
meter = metrics.get_meter("conclave")
_tokens = meter.create_counter("gen_ai.client.token.usage", unit="{token}", description="Tokens by model and type")
_cost = meter.create_counter("conclave.cost.usd", unit="USD", description="Unified cost by model")
_runs = meter.create_counter("conclave.runs.finished", unit="{run}", description="Finished runs by status")


def setup_telemetry(service_name: str = "conclave") -> None:
    """Install a tracer provider from the ``OTEL_*`` environment, once per process."""
    global _configured
    with _lock:
        if _configured:
            return
        _configured = True
        exporter_name = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
        endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        if exporter_name in ("", "none") and not endpoint:
            return
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

        provider = TracerProvider(
            resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
        )
        exporter: SpanExporter
        if exporter_name == "console":
            exporter = ConsoleSpanExporter()
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)


def capture_content() -> bool:
    return os.environ.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "").lower() in ("1", "true", "yes")


def carrier() -> dict[str, str]:
    """The current trace context as W3C headers, to store with a run."""
    out: dict[str, str] = {}
    inject(out)
    return out


@contextlib.contextmanager
def run_span(run_id: str, kind: str, parent: Mapping[str, str] | None, attempt: int) -> Iterator[Span]:
    ctx = extract(dict(parent)) if parent else None
    token = otel_context.attach(ctx) if ctx is not None else None
    try:
        with tracer.start_as_current_span(
            f"run {kind}",
            kind=SpanKind.CONSUMER,
            attributes={"conclave.run.id": run_id, "conclave.run.kind": kind, "conclave.run.attempt": attempt},
        ) as span:
            yield span
    finally:
        if token is not None:
            otel_context.detach(token)


@contextlib.contextmanager
def agent_span(name: str, *, agent_id: str | None = None, model: str | None = None) -> Iterator[Span]:
    attrs: dict[str, Any] = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": name}
    if agent_id:
        attrs["gen_ai.agent.id"] = agent_id
    if model:
        attrs["gen_ai.request.model"] = model
    with tracer.start_as_current_span(f"invoke_agent {name}", kind=SpanKind.INTERNAL, attributes=attrs) as span:
        yield span


@contextlib.contextmanager
def model_span(model: str, provider: str, *, max_tokens: int | None, messages: Any = None) -> Iterator[Span]:
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
    }
    if max_tokens is not None:
        attrs["gen_ai.request.max_tokens"] = max_tokens
    if messages is not None and capture_content():
        attrs["gen_ai.input.messages"] = json.dumps(messages, default=str)[:20_000]
    with tracer.start_as_current_span(
        f"chat {model}", kind=SpanKind.CLIENT, attributes=attrs, record_exception=True
    ) as span:
        yield span


def record_usage(
    span: Span,
    model: str,
    input_tokens: int,
    output_tokens: int,
    finish_reasons: list[str],
    usd: float,
    output: Any = None,
) -> None:
    span.set_attribute("gen_ai.response.model", model)
    span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
    span.set_attribute("gen_ai.usage.output_tokens", output_tokens)
    span.set_attribute("gen_ai.response.finish_reasons", finish_reasons)
    if output is not None and capture_content():
        span.set_attribute("gen_ai.output.messages", json.dumps(output, default=str)[:20_000])
    _tokens.add(input_tokens, {"gen_ai.request.model": model, "gen_ai.token.type": "input"})
    _tokens.add(output_tokens, {"gen_ai.request.model": model, "gen_ai.token.type": "output"})
    if usd:
        _cost.add(usd, {"gen_ai.request.model": model})


@contextlib.contextmanager
def tool_span(name: str, *, call_id: str | None = None) -> Iterator[Span]:
    attrs: dict[str, Any] = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name}
    if call_id:
        attrs["gen_ai.tool.call.id"] = call_id
    with tracer.start_as_current_span(f"execute_tool {name}", kind=SpanKind.INTERNAL, attributes=attrs) as span:
        yield span


_queue_depth: dict[str, int] = {"waiting": 0, "in_flight": 0}


def _observe_queue(_: Any) -> list[metrics.Observation]:
    return [metrics.Observation(v, {"conclave.queue.state": k}) for k, v in _queue_depth.items()]


meter.create_observable_gauge(
    "conclave.queue.depth",
    callbacks=[_observe_queue],
    unit="{run}",
    description="Runs waiting for a worker and held by workers",
)


def set_queue_depth(waiting: int, in_flight: int) -> None:
    """Workers report the queue's depth as they poll it; the gauge reads the latest figures."""
    _queue_depth["waiting"], _queue_depth["in_flight"] = waiting, in_flight


def run_finished(status: str, kind: str) -> None:
    _runs.add(1, {"conclave.run.status": status, "conclave.run.kind": kind})


def mark_error(span: Span, exc: BaseException) -> None:
    span.set_status(Status(StatusCode.ERROR, str(exc)[:200]))
    span.set_attribute("error.type", type(exc).__name__)
