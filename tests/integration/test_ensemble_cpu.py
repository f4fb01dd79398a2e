"""``moa-lite-local`` on the real CPU model (SmolLM2-135M on llama.cpp): the mechanics, not the prose."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from conclave.agents.ensemble import ensemble_chat, load_named
from conclave.agents.runtime import RunEnv, open_run
from conclave.budgets.cost import cost_from_snapshot
from conclave.budgets.pricing import Pricing
from conclave.cluster.router import LocalRouter
from conclave.controller.redis_store import RedisRunStore
from conclave.schema import Budget, TaskSpec
from conclave.schema.chat import ChatMessage, ChatRequest

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def cpu_router() -> LocalRouter:
    try:
        from conclave.cluster.defaults import default_model_spec
        from conclave.cluster.engines import build_engine

        spec = default_model_spec()
        engine = build_engine(spec)
    except (FileNotFoundError, ImportError) as e:
        pytest.skip(f"the CPU default model is not installed: {e}")
    return LocalRouter({spec.name: engine}, {spec.name: spec.context_window or 2048})


async def test_moa_lite_local_on_the_cpu_model(redis: Redis, prefix: str, cpu_router: LocalRouter) -> None:
    store = RedisRunStore(redis, prefix)
    await store.ready()
    spec = TaskSpec(kind="ensemble", input="Name a primary colour.", model="ensemble/moa-lite-local")
    run = (await store.submit(spec)).run
    entry = (await store.read_new("c", 1, 100))[0]
    claim = await store.claim(run.id, owner="o", qid=entry.qid, worker="w", max_attempts=3)
    run = run.model_copy(update={"spec": spec.model_copy(update={"budget": Budget(output_tokens=20_000)})})
    ctx = await open_run(store, run, owner="o", attempt=claim.attempt, env=RunEnv(router=cpu_router, pricing=Pricing()))
    config = load_named("moa-lite-local")
    request = ChatRequest(
        model="ensemble/moa-lite-local",
        messages=[ChatMessage(role="user", content="Name a primary colour.")],
        max_tokens=24,
        seed=1,
    )
    response = await ensemble_chat(config, request, ctx.meter, max_parse_retries=1)
    assert response.model == "ensemble/moa-lite-local"
    assert isinstance(response.message.content, str) and response.message.content.strip()
    cost = cost_from_snapshot(await ctx.ledger.snapshot())
    # 1 request of 3 samples, the critic (1-2 requests with a retry), the fuser.
    assert 3 <= cost.total.usage.model_calls <= 4
    assert response.usage.completion_tokens == cost.total.usage.output_tokens > 0
    assert response.usage.prompt_tokens == cost.total.usage.input_tokens > 0
    # Every call was capped by the request's max_tokens: at most 24 per completion.
    assert cost.total.usage.output_tokens <= 24 * (3 + 2 + 1)
    assert set(cost.by_stage) >= {"layer0/generator", "layer2/fuser"}
