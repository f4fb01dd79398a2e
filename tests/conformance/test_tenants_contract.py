"""The tenant-budget part of the ``RunStore`` contract (``conclave.core.store_tenants``), on every backend."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from conclave.controller.redis_server import EmbeddedRedis
from conclave.controller.scripts import script_source
from conclave.core.ledger import RunLedger
from conclave.core.pending import PendingCommit
from conclave.core.periods import period_id
from conclave.core.store import ClaimOutcome, FinishFields, RunStore
from conclave.core.store_tenants import key_scope, tenant_scope
from conclave.schema import BudgetLimits, RunStatus, ScopeBudget, StopReason, TaskSpec

from .conftest import spec


async def claimed(store: RunStore, tenant: str, owner: str, key_id: str | None = None) -> str:
    run = (await store.submit(spec(f"for {tenant}"), tenant=tenant, key_id=key_id)).run
    entries = await store.read_new(f"c-{owner}", 100, 100)
    qid = next(e.qid for e in entries if e.rid == run.id)
    claim = await store.claim(run.id, owner=owner, qid=qid, worker="w", max_attempts=3)
    assert claim.outcome is ClaimOutcome.OK
    return run.id


def daily(**caps: int | float) -> ScopeBudget:
    return ScopeBudget(periods={"daily": BudgetLimits(**caps)})  # type: ignore[arg-type]


def line(spend: object, limit: str) -> object:
    return next(x for x in spend.lines if x.limit == limit)  # type: ignore[attr-defined]


async def test_a_budget_round_trips_and_an_empty_one_removes_every_cap(store: RunStore) -> None:
    b = ScopeBudget(periods={"daily": BudgetLimits(usd=1.5), "monthly": BudgetLimits(output_tokens=10_000)})
    await store.set_budget("tenant/t", b)
    assert await store.get_budget("tenant/t") == b
    await store.set_budget("tenant/t", ScopeBudget())
    assert (await store.get_budget("tenant/t")).periods == {}


async def test_two_runs_of_one_tenant_share_its_cap(store: RunStore) -> None:
    await store.set_budget(tenant_scope("acme"), daily(output_tokens=100))
    a = await claimed(store, "acme", "oa")
    b = await claimed(store, "acme", "ob")
    la, lb = RunLedger(store, a, "oa"), RunLedger(store, b, "ob")
    await la.set_caps({})
    await lb.set_caps({})
    assert la.has_caps and lb.has_caps, "a tenant budget makes every call of its runs reserve"
    res_a, refusal = await la.reserve("run", {"output_tokens": 60})
    assert res_a and refusal is None
    _, refusal = await lb.reserve("run", {"output_tokens": 50})
    assert refusal is not None and (refusal.scope, refusal.limit, refusal.room) == (
        "tenant/acme@daily",
        "output_tokens",
        40,
    )
    other = await claimed(store, "other", "oo")
    lo = RunLedger(store, other, "oo")
    await lo.set_caps({})
    assert not lo.has_caps, "another tenant is not capped"
    await store.commit(a, "oa", PendingCommit(ledger=[RunLedger.commit_op(res_a, "run", {"output_tokens": 30})]))
    spend = await store.spend(tenant_scope("acme"), "daily")
    out = line(spend, "output_tokens")
    assert (out.cap, out.used, out.reserved, out.left) == (100, 30, 0, 70)  # type: ignore[attr-defined]
    assert spend.period_id == period_id("daily", spend.starts_at + 1)  # type: ignore[operator]


async def test_usage_is_readable_in_every_period_capped_or_not(store: RunStore) -> None:
    rid = await claimed(store, "free", "o")
    by = {"model|m1|output_tokens": 7, "model|m1|usd": 2_000_000}
    op = RunLedger.commit_op(None, "run", {"output_tokens": 7, "usd": 2_000_000, "model_calls": 1}, by)
    await store.commit(rid, "o", PendingCommit(ledger=[op]))
    for period in ("daily", "monthly", "none"):
        s = await store.spend(tenant_scope("free"), period)  # type: ignore[arg-type]
        assert line(s, "output_tokens").used == 7 and line(s, "model_calls").used == 1  # type: ignore[attr-defined]
        assert line(s, "usd").used == pytest.approx(2e-6)  # type: ignore[attr-defined]
        assert s.by_model["m1"]["output_tokens"] == 7


async def test_usage_above_the_room_is_over_never_used(store: RunStore) -> None:
    await store.set_budget(tenant_scope("t"), daily(model_calls=3))
    rid = await claimed(store, "t", "o")
    ledger = RunLedger(store, rid, "o")
    await ledger.set_caps({"run|model_calls": 2})
    res, _ = await ledger.reserve("run", {"model_calls": 1})
    op = RunLedger.commit_op(res, "run", {"model_calls": 5})
    await store.commit(rid, "o", PendingCommit(ledger=[op]))
    snap = await ledger.snapshot()
    assert snap.used[("run", "model_calls")] == 2 and snap.over[("run", "model_calls")] == 3
    mc = line(await store.spend(tenant_scope("t"), "daily"), "model_calls")
    assert (mc.used, mc.over) == (3, 2)  # type: ignore[attr-defined]


async def test_a_keys_budget_binds_only_the_runs_of_that_key(store: RunStore) -> None:
    await store.set_budget(key_scope("key_x"), daily(model_calls=1))
    with_key = await claimed(store, "t", "o1", key_id="key_x")
    without = await claimed(store, "t", "o2")
    lk, ln = RunLedger(store, with_key, "o1"), RunLedger(store, without, "o2")
    await lk.set_caps({})
    await ln.set_caps({})
    assert lk.has_caps and not ln.has_caps
    res, refusal = await lk.reserve("run", {"model_calls": 1})
    assert res and refusal is None
    _, refusal = await lk.reserve("run", {"model_calls": 1})
    assert refusal is not None and refusal.scope == "key/key_x@daily"


async def test_endpoint_calls_and_runs_share_one_cap_and_a_retried_commit_applies_once(store: RunStore) -> None:
    await store.set_budget(tenant_scope("t"), daily(output_tokens=100))
    assert await store.reserve_call("t", None, "call-1", amounts={"output_tokens": 70}, ttl_s=60) is None
    rid = await claimed(store, "t", "o")
    ledger = RunLedger(store, rid, "o")
    await ledger.set_caps({})
    _, refusal = await ledger.reserve("run", {"output_tokens": 40})
    assert refusal is not None and refusal.room == 30
    for _ in range(2):  # the reply was lost and the call re-sent
        await store.commit_call("t", None, "call-1", used={"output_tokens": 50}, by={"model|m|output_tokens": 50})
    out = line(await store.spend(tenant_scope("t"), "daily"), "output_tokens")
    assert (out.used, out.reserved) == (50, 0)  # type: ignore[attr-defined]
    refusal = await store.reserve_call("t", None, "call-2", amounts={"output_tokens": 51}, ttl_s=60)
    assert refusal is not None and refusal.room == 50


async def test_finishing_a_run_releases_its_tenant_holds(store: RunStore) -> None:
    await store.set_budget(tenant_scope("t"), daily(output_tokens=100))
    rid = await claimed(store, "t", "o")
    ledger = RunLedger(store, rid, "o")
    await ledger.set_caps({})
    await ledger.reserve("run", {"output_tokens": 80})
    assert await store.finish(rid, "o", RunStatus.SUCCEEDED, FinishFields(stop_reason=StopReason.END_TURN))
    out = line(await store.spend(tenant_scope("t"), "daily"), "output_tokens")
    assert out.reserved == 0 and out.left == 100  # type: ignore[attr-defined]


async def test_renewing_holds_keeps_them_and_reports_which_runs_have_a_tenant_or_key_budget(
    store: RunStore,
) -> None:
    rid = await claimed(store, "t", "o")
    ledger = RunLedger(store, rid, "o")
    await ledger.set_caps({"run|output_tokens": 100})
    await ledger.reserve("run", {"output_tokens": 90}, ttl_s=0.2)
    assert await store.renew_holds([(rid, "o")], ttl_s=60) == set(), "own caps are not an outer budget"
    assert ledger.has_caps and not ledger.outer
    import asyncio

    await asyncio.sleep(0.3)
    _, refusal = await ledger.reserve("run", {"output_tokens": 50})
    assert refusal is not None, "the renewed hold was not swept"
    free = await claimed(store, "u", "o2")
    assert await store.renew_holds([(free, "o2"), (rid, "not-the-owner")], ttl_s=60) == set()
    await store.set_budget(tenant_scope("u"), daily(model_calls=5))
    assert await store.renew_holds([(free, "o2")], ttl_s=60) == {free}, "a budget set mid-run reaches it"


async def test_set_caps_answers_the_runs_stored_caps_and_whether_its_tenant_has_a_budget(store: RunStore) -> None:
    rid = await claimed(store, "t", "o")
    first = await store.set_caps(rid, "o", {"run|output_tokens": 100, "run/a|model_calls": 5})
    assert first.own == {("run", "output_tokens"), ("run/a", "model_calls")} and not first.outer
    again = await store.set_caps(rid, "o", {})
    assert again.own == first.own, "a resumed run keeps the caps it first had"
    await store.set_budget(tenant_scope("t"), daily(usd=1.0))
    assert (await store.set_caps(rid, "o", {})).outer


async def test_a_claim_reports_the_stores_clock(store: RunStore) -> None:
    run = (await store.submit(TaskSpec(kind="chat", input="x"))).run
    (entry,) = await store.read_new("c", 10, 100)
    claim = await store.claim(run.id, owner="o", qid=entry.qid, worker="w", max_attempts=3)
    assert claim.clock is not None and claim.started_at is not None and claim.clock >= claim.started_at


@pytest.mark.redis
@pytest.mark.parametrize(
    "ts",
    [0.0, 951_782_400.0, 951_868_799.0, 1_709_164_800.0, 1_735_689_599.5, 1_735_689_600.0, 4_107_542_399.0],
    ids=["epoch", "2000-02-29", "2000-02-29-late", "2024-02-29", "2024-12-31-last", "2025-01-01", "2100-02-28"],
)
async def test_the_scripts_periods_agree_with_python_on_calendar_edges(redis_server: EmbeddedRedis, ts: float) -> None:
    r = Redis.from_url(redis_server.url, decode_responses=True)
    body = script_source("set_caps").split("-- Set a run's budget caps")[0]
    got = await r.eval(
        body + "\nreturn {period_id('daily', tonumber(ARGV[1])), period_id('monthly', tonumber(ARGV[1]))}", 0, ts
    )  # type: ignore[misc]
    await r.aclose()
    assert got == [period_id("daily", ts), period_id("monthly", ts)]
