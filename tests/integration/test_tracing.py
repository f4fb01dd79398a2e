"""One trace per run: the submitting request, the run on its worker and its model calls."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from redis.asyncio import Redis

from conclave import telemetry
from conclave.controller.redis_server import EmbeddedRedis
from conclave.controller.store import RunStore
from conclave.schema import TaskSpec

from ._helpers import running_worker, sim_settings, wait_terminal

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    trace.set_tracer_provider(provider)
    return _EXPORTER


async def test_run_and_model_call_spans_share_the_submitters_trace(
    spans: InMemorySpanExporter, redis_server: EmbeddedRedis, redis: Redis, prefix: str
) -> None:
    store = RunStore(redis, prefix, binary=Redis.from_url(redis_server.url))
    await store.ensure_group()
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("POST /v1/runs") as root:
        run, _, _ = await store.submit(TaskSpec(kind="chat", input="trace me please"), trace=telemetry.carrier())
    async with running_worker(sim_settings(prefix), redis_server.url):
        await wait_terminal(store, run.id)
    finished = {s.name: s for s in spans.get_finished_spans() if s.context.trace_id == root.get_span_context().trace_id}
    assert {"POST /v1/runs", "run chat", "chat sim"} <= set(finished), sorted(finished)
    run_span, call = finished["run chat"], finished["chat sim"]
    assert run_span.parent is not None and run_span.parent.span_id == root.get_span_context().span_id
    assert call.parent is not None and call.parent.span_id == run_span.context.span_id
    a = call.attributes or {}
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == "sim"
    assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
    assert "gen_ai.input.messages" not in a, "content capture is opt-in"
    assert (run_span.attributes or {})["conclave.run.id"] == run.id
