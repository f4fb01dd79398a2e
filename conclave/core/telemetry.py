"""OpenTelemetry for Conclave: one trace per run, across processes, with GenAI span names.

Spans: ``run {kind}`` (the run on its worker, a child of the submitting request through the trace
context stored with the run), ``invoke_agent {name}``, ``chat {model}`` (every metered model call,
with ``gen_ai.*`` request and usage attributes) and ``execute_tool {name}``. Message content is
recorded only when ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``.

Exporters follow the standard environment: ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``,
``none``) and ``OTEL_EXPORTER_OTLP_ENDPOINT``; with neither set, tracing is a no-op.

Metrics are Prometheus metrics (``prometheus-client``), the one metrics path: the instruments live in
``conclave.core.metrics`` and are exposed by ``GET /metrics`` on the API and by each worker's listener.
The functions here that record them (``record_usage``, ``run_finished``…) are where the code already
reports what happened, so spans and metrics stay in step.

The cost when tracing is off (the default) is a module flag read per call: whether a recording tracer
provider is installed is checked when telemetry is set up and once per run (``run_span``,
``agent_span``: a test or an embedding application may install a provider later), and the spans are
then skipped entirely — no span object, no OpenTelemetry context attached or detached; what the
metrics need (the run's labels, a model call's duration) is kept by small context managers. The
content-capture switch is read from the environment once per process.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import threading
import time
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from . import metrics

__all__ = [
    "agent_span",
    "capture_content",
    "carrier",
    "ledger_refused",
    "leases_lost",
    "mark_error",
    "model_span",
    "record_usage",
    "redelivered",
    "refresh_tracing",
    "run_finished",
    "run_span",
    "scheduled_run",
    "set_queue_depth",
    "setup_telemetry",
    "step_done",
    "tool_span",
    "webhook_attempt",
    "webhook_delivery",
]

_lock = threading.Lock()
_configured = False
tracer = trace.get_tracer("conclave")


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
#: A span when tracing is off: reusable, enters to the invalid (non-recording) span.
_OFF: contextlib.nullcontext[Span] = contextlib.nullcontext(trace.INVALID_SPAN)


def refresh_tracing() -> bool:
    """Whether spans go anywhere: a tracer provider other than the API's default proxy (or the no-op
    one) is installed. Called at setup and once per run; the per-call spans read the result."""
    global _tracing
    _tracing = not isinstance(trace.get_tracer_provider(), (trace.ProxyTracerProvider, trace.NoOpTracerProvider))
    return _tracing


class _RunLabels:
    """``run_span`` without tracing: only the metrics' run labels are set for the run's duration."""

    def __init__(self, labels: metrics.RunLabels) -> None:
        self.labels = labels
        self.token: Any = None

    def __enter__(self) -> Span:
        self.token = metrics.run_labels.set(self.labels)
        return trace.INVALID_SPAN

    def __exit__(self, *exc: object) -> None:
        metrics.run_labels.reset(self.token)


class _ModelCallTimer:
    """``model_span`` without tracing: only the call's duration is observed, labelled by outcome."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.t0 = 0.0

    def __enter__(self) -> Span:
        self.t0 = time.perf_counter()
        return trace.INVALID_SPAN

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        outcome = "ok" if exc_type is None else "error"
        metrics.child(metrics.MODEL_CALL_SECONDS, model=self.model, outcome=outcome).observe(
            time.perf_counter() - self.t0
        )


def carrier() -> dict[str, str]:
    """The current trace context as W3C headers, to store with a run."""
    out: dict[str, str] = {}
    inject(out)
    return out


def run_span(
    run_id: str, kind: str, parent: Mapping[str, str] | None, attempt: int, *, tenant: str | None = None
) -> contextlib.AbstractContextManager[Span]:
    """The run's span; inside it, metrics recorded for the run carry its tenant and kind."""
    if not refresh_tracing():
        return _RunLabels(metrics.RunLabels(tenant=tenant or "default", kind=kind))
    return _run_span(run_id, kind, parent, attempt, tenant=tenant)


@contextlib.contextmanager
def _run_span(
    run_id: str, kind: str, parent: Mapping[str, str] | None, attempt: int, *, tenant: str | None
) -> Iterator[Span]:
    ctx = extract(dict(parent)) if parent else None
    token = otel_context.attach(ctx) if ctx is not None else None
    labels = metrics.run_labels.set(metrics.RunLabels(tenant=tenant or "default", kind=kind))
    try:
        with tracer.start_as_current_span(
            f"run {kind}",
            kind=SpanKind.CONSUMER,
            attributes={"conclave.run.id": run_id, "conclave.run.kind": kind, "conclave.run.attempt": attempt},
        ) as span:
            yield span
    finally:
        metrics.run_labels.reset(labels)
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
    """``chat {model}`` around one metered model call (its duration is observed either way)."""
    if not _tracing:
        return _ModelCallTimer(model)
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
    t0 = time.perf_counter()
    outcome = "error"
    try:
        with tracer.start_as_current_span(
            f"chat {model}", kind=SpanKind.CLIENT, attributes=attrs, record_exception=True
        ) as span:
            yield span
            outcome = "ok"
    finally:
        metrics.MODEL_CALL_SECONDS.labels(model=model, outcome=outcome).observe(time.perf_counter() - t0)


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
    tenant = metrics.tenant_label(metrics.run_labels.get().tenant)
    metrics.child(metrics.TOKENS, tenant=tenant, model=model, type="input").inc(input_tokens)
    metrics.child(metrics.TOKENS, tenant=tenant, model=model, type="output").inc(output_tokens)
    if usd:
        metrics.child(metrics.COST_USD, tenant=tenant, model=model).inc(usd)


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


def set_queue_depth(waiting: int, in_flight: int) -> None:
    """Workers report the queue's depth as they poll it."""
    metrics.QUEUE_DEPTH.labels(state="waiting").set(waiting)
    metrics.QUEUE_DEPTH.labels(state="in_flight").set(in_flight)


def run_finished(status: str, kind: str, tenant: str | None = None) -> None:
    t = metrics.tenant_label(tenant or metrics.run_labels.get().tenant)
    metrics.RUNS_FINISHED.labels(tenant=t, status=status, kind=kind).inc()


def step_done(seconds: float) -> None:
    """A durable step ran and committed (replayed steps are not counted)."""
    metrics.child(metrics.STEP_SECONDS, kind=metrics.run_labels.get().kind).observe(seconds)


def ledger_refused(scope: str, limit: str) -> None:
    """The ledger refused a reservation; ``scope`` is labelled by its level (run, tenant, key…)."""
    metrics.LEDGER_REFUSALS.labels(limit=limit, scope=scope.split("/", 1)[0]).inc()


def leases_lost(n: int = 1) -> None:
    metrics.LEASE_EXPIRIES.inc(n)


def redelivered(n: int) -> None:
    """Queue entries taken over from a worker that stopped renewing them."""
    if n:
        metrics.REDELIVERIES.inc(n)


def webhook_attempt(result: str) -> None:
    metrics.WEBHOOK_ATTEMPTS.labels(result=result).inc()


def webhook_delivery(outcome: str) -> None:
    metrics.WEBHOOK_DELIVERIES.labels(outcome=outcome).inc()


def scheduled_run() -> None:
    metrics.SCHEDULED_RUNS.inc()


def mark_error(span: Span, exc: BaseException) -> None:
    span.set_status(Status(StatusCode.ERROR, str(exc)[:200]))
    span.set_attribute("error.type", type(exc).__name__)
