"""A reservation asks the store only when it can hold something: a call none of whose limits is capped
in its scopes, in a run whose tenant and key have no budget, costs no store operation (a tool call
under a budget of model calls and tokens was one round trip per step for an answer known in advance)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from conclave.controller.redis_server import EmbeddedRedis
from conclave.controller.redis_store import RedisRunStore
from conclave.core.ledger import RunLedger
from conclave.core.store_tenants import tenant_scope
from conclave.schema import BudgetLimits, ScopeBudget

from ..conformance.conftest import redis_store, submit_and_claim

pytestmark = pytest.mark.redis

TOOL = {"tool:lookup": 1, "tool:*": 1, "usd": 0}


@pytest.fixture
async def store(redis_server: EmbeddedRedis) -> AsyncIterator[RedisRunStore]:
    s = redis_store(redis_server)
    await s.ready()
    yield s
    await s.close()


async def scripts_run(store: RedisRunStore) -> int:
    """Scripts the server ran (a first ``EVALSHA`` that got NOSCRIPT, before the script was loaded, is not one)."""
    stats = await store.redis.info("commandstats")
    n = 0
    for c in ("evalsha", "eval", "fcall"):
        row = stats.get(f"cmdstat_{c}", {})
        n += int(row.get("calls", 0)) - int(row.get("failed_calls", 0)) - int(row.get("rejected_calls", 0))
    return n


async def test_a_call_no_cap_applies_to_reserves_without_a_store_operation(store: RedisRunStore) -> None:
    rid, _ = await submit_and_claim(store, owner="o")
    ledger = RunLedger(store, rid, "o")
    await ledger.set_caps({"run|model_calls": 10, "run|output_tokens": 1000})
    before = await scripts_run(store)
    assert await ledger.reserve("run/a", TOOL) == (None, None)
    assert await scripts_run(store) == before, "an uncapped tool call went to the store"
    res, refusal = await ledger.reserve("run/a", {"model_calls": 1, "output_tokens": 64})
    assert res is not None and refusal is None
    assert await scripts_run(store) == before + 1, "a capped model call holds in the store"
    assert (await store.ledger_snapshot(rid)).reserved[("run", "model_calls")] == 1


async def test_a_tool_cap_in_an_enclosing_scope_makes_the_call_reserve(store: RedisRunStore) -> None:
    rid, _ = await submit_and_claim(store, owner="o")
    ledger = RunLedger(store, rid, "o")
    await ledger.set_caps({"run|tool:*": 1})
    res, refusal = await ledger.reserve("run/a", TOOL)
    assert res is not None and refusal is None
    _, refusal = await ledger.reserve("run/a", TOOL)
    assert refusal is not None and refusal.limit == "tool:*", "the second call fits no more"


async def test_a_tenant_budget_makes_every_call_of_its_runs_reserve(store: RedisRunStore) -> None:
    rid, _ = await submit_and_claim(store, owner="o")
    ledger = RunLedger(store, rid, "o")
    await ledger.set_caps({"run|model_calls": 10})
    assert not ledger.outer
    await store.set_budget(tenant_scope("default"), ScopeBudget(periods={"daily": BudgetLimits(usd=1.0)}))
    ledger.outer = rid in await store.renew_holds([(rid, "o")], ttl_s=60)  # what the worker's renewal does
    before = await scripts_run(store)
    await ledger.reserve("run/a", TOOL)
    assert await scripts_run(store) == before + 1, "the tenant's budget could bind this call: it reserves"
