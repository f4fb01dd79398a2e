"""One trace per run: the submitting request, the run on its worker and its model calls."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from redis.asyncio import Redis

from conclave.controller.redis_server import EmbeddedRedis
from conclave.controller.redis_store import RedisRunStore
from conclave.core import telemetry
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
    store = RedisRunStore(redis, prefix, binary=Redis.from_url(redis_server.url))
    await store.ready()
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("POST /v1/runs") as root:
        run = (await store.submit(TaskSpec(kind="chat", input="trace me please"), trace=telemetry.carrier())).run
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


async def test_agent_run_with_a_tool_call_and_an_ensemble_is_one_trace(
    spans: InMemorySpanExporter, redis_server: EmbeddedRedis, redis: Redis, prefix: str
) -> None:
    """invoke_agent → chat/execute_tool for an agent run, and an ensemble run's calls, each in the
    trace of the request that submitted it."""
    from conclave.cluster.config import ModelSpec

    store = RedisRunStore(redis, prefix, binary=Redis.from_url(redis_server.url))
    await store.ready()
    model = ModelSpec(
        name="sim", engine="sim", options={"mode": "tool_loop", "steps": 2, "tool_name": "ls", "tool_arguments": {}}
    )
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("POST /v1/runs agent") as root:
        run = (
            await store.submit(
                TaskSpec(kind="agent", input="look", model="sim", tools=["ls"]), trace=telemetry.carrier()
            )
        ).run
    ensemble = {
        "name": "pair",
        "layers": [[{"type": "generator", "model": "sim", "model_type": "conclave", "samples": 2}]],
    }
    with tracer.start_as_current_span("POST /v1/runs ensemble") as root2:
        run2 = (
            await store.submit(
                TaskSpec(kind="ensemble", input="hi", model="sim", ensemble=ensemble), trace=telemetry.carrier()
            )
        ).run
    async with running_worker(sim_settings(prefix, models=[model]), redis_server.url):
        done = await wait_terminal(store, run.id)
        done2 = await wait_terminal(store, run2.id)
    assert done.status.value == "succeeded" and done2.status.value == "succeeded", (done.stop_detail, done2.stop_detail)
    finished = spans.get_finished_spans()
    mine = [s for s in finished if s.context.trace_id == root.get_span_context().trace_id]
    names = {s.name for s in mine}
    assert {"run agent", "invoke_agent agent", "chat sim", "execute_tool ls"} <= names, names
    by_id = {s.context.span_id: s for s in mine}
    agent = next(s for s in mine if s.name == "invoke_agent agent")
    assert (agent.attributes or {})["gen_ai.operation.name"] == "invoke_agent"
    for child in (s for s in mine if s.name in ("chat sim", "execute_tool ls")):
        parent = by_id[child.parent.span_id]  # type: ignore[union-attr]
        while parent.name not in ("invoke_agent agent", "run agent"):
            parent = by_id[parent.parent.span_id]  # type: ignore[union-attr]
        assert parent.name == "invoke_agent agent"
    tool = next(s for s in mine if s.name == "execute_tool ls")
    assert (tool.attributes or {})["gen_ai.tool.name"] == "ls"
    ens = [s for s in finished if s.context.trace_id == root2.get_span_context().trace_id]
    assert {"run ensemble", "chat sim"} <= {s.name for s in ens}
