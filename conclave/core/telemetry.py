"""OpenTelemetry for Conclave: one trace per run, across processes, with GenAI span names.

Spans: ``run {kind}`` (the run on its worker, a child of the submitting request through the trace
context stored with the run), ``invoke_agent {name}``, ``chat {model}`` (every metered model call,
with ``gen_ai.*`` request and usage attributes) and ``execute_tool {name}``. Message content is
recorded only when ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``.

Exporters follow the standard environment: ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``,
``none``) and ``OTEL_EXPORTER_OTLP_ENDPOINT``; with neither set, tracing is a no-op.

The cost when tracing is off (the default) is a module flag read per call: whether a recording tracer
provider is installed is checked when telemetry is set up and once per run (``run_span``,
``agent_span``: a test or an embedding application may install a provider later), and the per-call
spans (``model_span``, ``tool_span``) are then a shared null context yielding the invalid span, with
no OpenTelemetry context attached or detached. The content-capture switch is read from the
environment once per process.
"""

from __future__ import annotations

import contextlib
import functools
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
    "refresh_tracing",
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
            refresh_tracing()
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
        refresh_tracing()


@functools.cache
def capture_content() -> bool:
    """``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``, read once per process (it was read on
    every model call)."""
    return os.environ.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "").lower() in ("1", "true", "yes")


_tracing = False
#: What a span is when tracing is off: reusable, enters to the invalid (non-recording) span.
_OFF: contextlib.nullcontext[Span] = contextlib.nullcontext(trace.INVALID_SPAN)


def refresh_tracing() -> bool:
    """Whether spans go anywhere: a tracer provider other than the API's default proxy (or the no-op
    one) is installed. Called at setup and once per run; the per-call spans read the result."""
    global _tracing
    _tracing = not isinstance(trace.get_tracer_provider(), (trace.ProxyTracerProvider, trace.NoOpTracerProvider))
    return _tracing


def carrier() -> dict[str, str]:
    """The current trace context as W3C headers, to store with a run."""
    out: dict[str, str] = {}
    inject(out)
    return out


def run_span(
    run_id: str, kind: str, parent: Mapping[str, str] | None, attempt: int
) -> contextlib.AbstractContextManager[Span]:
    """``run {kind}``, a child of the submitter's trace context ``parent``."""
    if not refresh_tracing():
        return _OFF
    return _run_span(run_id, kind, parent, attempt)


@contextlib.contextmanager
def _run_span(run_id: str, kind: str, parent: Mapping[str, str] | None, attempt: int) -> Iterator[Span]:
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


def agent_span(
    name: str, *, agent_id: str | None = None, model: str | None = None
) -> contextlib.AbstractContextManager[Span]:
    """``invoke_agent {name}`` around one agent's loop."""
    if not refresh_tracing():
        return _OFF
    return _agent_span(name, agent_id=agent_id, model=model)


@contextlib.contextmanager
def _agent_span(name: str, *, agent_id: str | None, model: str | None) -> Iterator[Span]:
    attrs: dict[str, Any] = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": name}
    if agent_id:
        attrs["gen_ai.agent.id"] = agent_id
    if model:
        attrs["gen_ai.request.model"] = model
    with tracer.start_as_current_span(f"invoke_agent {name}", kind=SpanKind.INTERNAL, attributes=attrs) as span:
        yield span


def model_span(
    model: str, provider: str, *, max_tokens: int | None, messages: Any = None
) -> contextlib.AbstractContextManager[Span]:
    """``chat {model}`` around one metered model call."""
    if not _tracing:
        return _OFF
    return _model_span(model, provider, max_tokens=max_tokens, messages=messages)


@contextlib.contextmanager
def _model_span(model: str, provider: str, *, max_tokens: int | None, messages: Any) -> Iterator[Span]:
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
    if span.is_recording():
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


def tool_span(name: str, *, call_id: str | None = None) -> contextlib.AbstractContextManager[Span]:
    """``execute_tool {name}`` around one metered tool call."""
    if not _tracing:
        return _OFF
    return _tool_span(name, call_id=call_id)


@contextlib.contextmanager
def _tool_span(name: str, *, call_id: str | None) -> Iterator[Span]:
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
