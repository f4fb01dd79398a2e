"""The model cluster on a real Ray Serve: the bundled CPU model with two single-CPU replicas next to
a ``sim`` model, reached through ``ServeRouter`` and through the OpenAI endpoint."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import openai
import pytest
import ray
from ray import serve

from conclave.cluster.config import ModelSpec
from conclave.cluster.defaults import DEFAULT_MODEL_NAME, default_model_spec
from conclave.cluster.deployment import deploy_models
from conclave.cluster.pool import ServeRouter
from conclave.cluster.retry import RetryPolicy
from conclave.controller.redis_server import free_port
from conclave.schema.chat import ChatRequest, ModelNotFound

from ..unit._cluster_http import openai_app, serve_http

APP = "models-it"
SIM = ModelSpec(name="sim-echo", engine="sim", num_cpus=0.25, options={"mode": "echo"})


@pytest.fixture(scope="module")
def specs(ray_cluster: None) -> Iterator[list[ModelSpec]]:
    # Serve's proxy on a free loopback port: never 8000, which other test sessions use.
    serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
    # Two calls at most on a replica: a third one waits for a free slot, so the killed-replica test
    # knows where its calls are (below).
    llama = default_model_spec().model_copy(update={"max_ongoing_requests": 2})
    deployed = deploy_models([llama, SIM], app_name=APP)
    yield deployed
    serve.delete(APP)


def _req(text: str = "What is the capital of France?", **kw: object) -> ChatRequest:
    return ChatRequest.model_validate({"messages": [{"role": "user", "content": text}], **kw})


async def _replica_names(router: ServeRouter, model: str, want: int) -> set[str]:
    names: set[str] = set()
    for _ in range(60):
        names.add((await router.whoami(model))["actor_name"])
        if len(names) >= want:
            break
    return names


async def test_routes_by_name_and_discovers_models(specs: list[ModelSpec]) -> None:
    router = await ServeRouter.connect(APP)
    assert sorted(router.models()) == sorted([DEFAULT_MODEL_NAME, "sim-echo"])
    assert router.context_window(DEFAULT_MODEL_NAME) == 2048
    echo = await router.chat("sim-echo", _req("hello cluster"))
    assert echo.message.content == "hello cluster" and echo.model == "sim-echo"
    real = await router.chat(DEFAULT_MODEL_NAME, _req(max_tokens=8))
    assert real.model == DEFAULT_MODEL_NAME and real.usage.prompt_tokens > 0 and real.usage.completion_tokens > 0
    with pytest.raises(ModelNotFound, match="known models: sim-echo, smollm2-135m"):
        await router.chat("gpt-nope", _req())


async def test_concurrent_calls_use_both_replicas(specs: list[ModelSpec]) -> None:
    router = ServeRouter(specs, app_name=APP)
    assert len(await _replica_names(router, DEFAULT_MODEL_NAME, 2)) == 2
    results = await asyncio.gather(*(router.chat(DEFAULT_MODEL_NAME, _req(max_tokens=8, seed=i)) for i in range(8)))
    assert all(r.usage.completion_tokens > 0 for r in results)


async def test_streaming_passes_through(specs: list[ModelSpec]) -> None:
    router = ServeRouter(specs, app_name=APP)
    chunks = [c async for c in router.stream(DEFAULT_MODEL_NAME, _req(max_tokens=12))]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    # Leaving a stream early cancels it on the replica; the model serves the next call.
    agen = router.stream(DEFAULT_MODEL_NAME, _req("Write a long story about a dragon.", max_tokens=300))
    async for _ in agen:
        break
    await agen.aclose()  # type: ignore[attr-defined]
    r = await router.chat(DEFAULT_MODEL_NAME, _req(max_tokens=4))
    assert r.usage.completion_tokens > 0


async def test_killed_replica_mid_call_is_retried_elsewhere(specs: list[ModelSpec]) -> None:
    router = ServeRouter(specs, app_name=APP, retry=RetryPolicy(attempts=4))
    story = _req("Write a long story about a dragon and a knight.", max_tokens=256, temperature=0.0)
    # Three calls on two replicas that take two each: both replicas get one at least, and the one
    # with a slot left is the only one that can answer ``whoami`` (its event loop is free while
    # llama.cpp runs). So the replica that answers with a call in flight has that call when killed,
    # however Serve's router spread the calls.
    # First both replicas idle: a stream an earlier test left can hold a replica's count for a
    # while under load, and would pass for one of these calls (seen: the "victim" had none of them).
    idle: set[str] = set()
    for _ in range(600):
        info = await router.whoami(DEFAULT_MODEL_NAME)
        if info["inflight"] == 0:
            idle.add(info["actor_name"])
        if len(idle) == 2:
            break
        await asyncio.sleep(0.1)
    assert len(idle) == 2, f"the replicas did not both fall idle: {idle}"
    calls = [asyncio.create_task(router.chat(DEFAULT_MODEL_NAME, story)) for _ in range(3)]
    victim = ""
    while not victim and not all(c.done() for c in calls):
        info = await router.whoami(DEFAULT_MODEL_NAME)
        if info["inflight"] >= 1:
            victim = info["actor_name"]
        else:
            await asyncio.sleep(0.05)
    assert victim, "every call finished before a replica reported one in flight"
    ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
    results = await asyncio.gather(*calls)
    assert all(r.usage.completion_tokens > 0 and r.message.content for r in results)
    assert router.retries >= 1  # at least one call was on the killed replica and went again
    survivors = await _replica_names(router, DEFAULT_MODEL_NAME, 1)
    assert victim not in survivors


@ray.remote(num_cpus=0)
class Caller:
    """Another actor using the router it was handed (as a controller worker does)."""

    def __init__(self, router: ServeRouter) -> None:
        self.router = router

    async def ask(self, text: str) -> str:
        r = await self.router.chat("sim-echo", _req(text))
        return r.message.content or ""


async def test_router_is_usable_inside_another_actor(specs: list[ModelSpec]) -> None:
    caller = Caller.remote(ServeRouter(specs, app_name=APP))  # type: ignore[attr-defined]
    assert await caller.ask.remote("from an actor") == "from an actor"


def test_openai_client_through_serve_with_the_cpu_model(specs: list[ModelSpec]) -> None:
    """client → HTTP endpoint → ServeRouter → replica → llama.cpp; mechanics, not prose."""
    router = ServeRouter(specs, app_name=APP)
    with serve_http(openai_app(router, default_model=DEFAULT_MODEL_NAME)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        model = client.models.list().data[0].id
        assert model in (DEFAULT_MODEL_NAME, "sim-echo")
        r = client.chat.completions.create(
            model=DEFAULT_MODEL_NAME, messages=[{"role": "user", "content": "Hi"}], max_tokens=16
        )
        assert r.usage is not None and r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
        chunks = list(
            client.chat.completions.create(
                model=DEFAULT_MODEL_NAME,
                messages=[{"role": "user", "content": "Hi"}],
                max_tokens=8,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
        n2 = client.chat.completions.create(
            model=DEFAULT_MODEL_NAME, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, n=2, seed=1
        )
        assert len(n2.choices) == 2
        tools = [
            {
                "type": "function",
                "function": {
                    "name": "read_file",
                    "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
                },
            }
        ]
        t = client.chat.completions.create(
            model=DEFAULT_MODEL_NAME,
            messages=[{"role": "user", "content": "Read the file notes.md"}],
            tools=tools,  # type: ignore[arg-type]
            tool_choice={"type": "function", "function": {"name": "read_file"}},
        )
        call = (t.choices[0].message.tool_calls or [])[0]
        assert call.function.name == "read_file" and isinstance(json.loads(call.function.arguments)["path"], str)
        j = client.chat.completions.create(
            model=DEFAULT_MODEL_NAME,
            messages=[{"role": "user", "content": "Name a city."}],
            max_tokens=64,
            response_format={
                "type": "json_schema",
                "json_schema": {
                    "name": "c",
                    "schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                },
            },
        )
        assert isinstance(json.loads(j.choices[0].message.content or "")["city"], str)
