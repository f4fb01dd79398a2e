"""The ledger's one promise, under everything that can go wrong at once: no limit at any level is ever
overshot, and every unit of usage committed is accounted for (as used, or as over-cap).

Each example runs many runs of one tenant concurrently (plus calls outside any run, as the OpenAI endpoint
makes them) against one tenant budget and each run's own caps and sub-scopes, with: usage below, at and
above what was held; holds left to expire and be swept; replies "lost" (every operation may be sent twice,
as redis-py does after a dropped connection); and workers whose clocks are skewed by up to a day (the
scripts use Redis's clock). Invariants are checked as it goes and at the end. ≥ 10,000 ledger operations
per backend in all; the figures are printed for docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections import Counter
from typing import Any

import pytest
from redis.asyncio import Redis

from conclave.controller import redis_store
from conclave.controller.redis_server import EmbeddedRedis
from conclave.controller.redis_store import RedisRunStore
from conclave.core.ledger import RunLedger
from conclave.core.memory import InMemoryRunStore
from conclave.core.pending import PendingCommit
from conclave.core.store import Refusal, RunStore
from conclave.core.store_tenants import tenant_scope
from conclave.schema import BudgetLimits, ScopeBudget, TaskSpec

LIMITS = ("input_tokens", "output_tokens", "model_calls")
TOTALS: Counter[str] = Counter()


async def _claim(store: RunStore, tenant: str, owner: str) -> str:
    run = (await store.submit(TaskSpec(kind="chat", input="p"), tenant=tenant)).run
    for _ in range(20):
        for e in await store.read_new(owner, 100, 50):
            await store.claim(
                e.rid, owner=owner if e.rid == run.id else f"x-{e.rid}", qid=e.qid, worker="w", max_attempts=9
            )
        got = await store.get(run.id)
        if got is not None and got.status.value == "running":
            return run.id
    raise AssertionError("run not claimed")


def _check(snap: Any, where: str) -> None:
    for (scope, limit), cap in snap.caps.items():
        used = snap.used.get((scope, limit), 0)
        resv = snap.reserved.get((scope, limit), 0)
        assert used <= cap, f"{where}: {scope}/{limit} used {used} > cap {cap}"
        assert used + resv <= cap, f"{where}: {scope}/{limit} used+held {used + resv} > cap {cap}"
        assert resv >= 0


async def _scenario(store: RunStore, seed: int, runs: int, ops_per_run: int) -> None:
    rng = random.Random(seed)
    tenant = f"t{seed}"
    # Caps the whole tenant's demand (~7 × ops_per_run asks) overshoots about twice: refusals are common
    # and the last room is fought over, but most operations go through.
    tcap = {
        "input_tokens": rng.randint(150_000, 300_000),
        "output_tokens": rng.randint(60_000, 120_000),
        "model_calls": rng.randint(1_000, 2_000),
    }
    await store.set_budget(tenant_scope(tenant), ScopeBudget(periods={"daily": BudgetLimits(**tcap)}))
    committed: Counter[str] = Counter()  # usage committed by everybody, per limit (tenant level)
    ledgers = []
    for i in range(runs):
        owner = f"o{seed}-{i}"
        rid = await _claim(store, tenant, owner)
        ledger = RunLedger(store, rid, owner)
        caps = {f"run|{k}": v // 6 for k, v in tcap.items()}
        caps.update({f"run/a|{k}": v // 12 for k, v in tcap.items()})
        await ledger.set_caps(caps)
        ledgers.append(ledger)

    async def send_twice_maybe(fn: Any, *args: Any, **kwargs: Any) -> Any:
        res = await fn(*args, **kwargs)
        if rng.random() < 0.2:  # the reply was lost: the same operation arrives again
            TOTALS["retries"] += 1
            res = await fn(*args, **kwargs)
        return res

    async def agent(ledger: RunLedger) -> None:
        for n in range(ops_per_run):
            scope = rng.choice(["run", "run/a", "run/a", "run/b"])
            ask = {k: 1 if k == "model_calls" else rng.randint(1, tcap[k] // 400) for k in LIMITS}
            ttl = 0.05 if rng.random() < 0.1 else 60.0
            res_id = f"r{secrets.token_hex(6)}"
            TOTALS["ops"] += 1
            scopes = ["run", *([scope] if scope != "run" else [])]
            got = await send_twice_maybe(
                store.reserve, ledger.rid, ledger.owner, res_id, scopes=scopes, amounts=ask, ttl_s=ttl
            )
            if isinstance(got, Refusal):
                TOTALS["refused"] += 1
                continue
            await asyncio.sleep(0)
            if ttl < 1 and rng.random() < 0.5:
                await asyncio.sleep(0.06)  # the hold expires and is swept by the next reservation
                TOTALS["expired"] += 1
            frac = rng.choice([0.0, 0.3, 0.9, 1.0, 1.5, 3.0])  # below, at, above the hold
            used = {k: int(v * frac) for k, v in ask.items()}
            op = RunLedger.commit_op(res_id, scope, used)
            cid = secrets.token_hex(6)
            TOTALS["ops"] += 1
            await send_twice_maybe(store.commit, ledger.rid, ledger.owner, PendingCommit(ledger=[op]), commit_id=cid)
            committed.update({k: v for k, v in used.items() if v})
            if n % 25 == 0:
                _check(await ledger.snapshot(), f"run {ledger.rid}")

    async def endpoint() -> None:
        for _ in range(ops_per_run):
            ask = {k: 1 if k == "model_calls" else rng.randint(1, tcap[k] // 400) for k in LIMITS}
            res_id = f"c{secrets.token_hex(6)}"
            TOTALS["ops"] += 1
            refusal = await send_twice_maybe(store.reserve_call, tenant, None, res_id, amounts=ask, ttl_s=60)
            if refusal is not None:
                TOTALS["refused"] += 1
                continue
            used = {k: int(v * rng.choice([0.5, 1.0, 1.3])) for k, v in ask.items()}
            TOTALS["ops"] += 1
            await send_twice_maybe(store.commit_call, tenant, None, res_id, used=used)
            committed.update({k: v for k, v in used.items() if v})

    await asyncio.gather(*(agent(lg) for lg in ledgers), endpoint())
    # Every run's own levels, and the tenant's, at the end:
    for lg in ledgers:
        snap = await lg.snapshot()
        _check(snap, f"run {lg.rid} at the end")
        TOTALS["over_cap_usage"] += sum(snap.over.values())
        TOTALS["scopes_filled"] += sum(
            1 for (sc, lim), cap in snap.caps.items() if snap.used.get((sc, lim), 0) >= 0.95 * cap
        )
        # Holds still open (refused later, never committed) are released when the run ends:
        from conclave.core.store import FinishFields
        from conclave.schema import RunStatus, StopReason

        await store.finish(lg.rid, lg.owner, RunStatus.SUCCEEDED, FinishFields(stop_reason=StopReason.END_TURN))
        assert sum((await lg.snapshot()).reserved.values()) == 0
    spend = await store.spend(tenant_scope(tenant), "daily")
    for line in spend.lines:
        cap = tcap[line.limit]
        assert line.used <= cap, f"tenant {line.limit}: used {line.used} > cap {cap}"
        assert line.reserved == 0
        assert line.used + line.over == committed[line.limit], f"tenant {line.limit}: usage lost or doubled"
    TOTALS["examples"] += 1


@pytest.fixture
def skewed_clocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every call a worker makes carries a clock off by up to a day (the scripts must not trust it)."""
    monkeypatch.setattr(redis_store, "_now", lambda: f"{time.time() + random.uniform(-86_400, 86_400):.6f}")


SEEDS = [11, 23, 37, 41, 53, 67]


def test_no_level_is_ever_overshot_and_usage_is_never_lost_on_redis(
    redis_server: EmbeddedRedis, skewed_clocks: None
) -> None:
    TOTALS.clear()

    async def go() -> None:
        r = Redis.from_url(redis_server.url, decode_responses=True, max_connections=64)
        for seed in SEEDS:
            store = RedisRunStore(r, f"lp{seed}{secrets.token_hex(3)}")
            await store.ready()
            await _scenario(store, seed, runs=6, ops_per_run=300)
        await r.aclose()

    asyncio.run(go())
    print(f"ledger property, Redis: {dict(TOTALS)}")
    assert TOTALS["ops"] >= 10_000 and TOTALS["examples"] == len(SEEDS), TOTALS
    assert TOTALS["refused"] > 0 and TOTALS["expired"] > 0 and TOTALS["retries"] > 0, "every fault was exercised"


def test_no_level_is_ever_overshot_and_usage_is_never_lost_in_memory() -> None:
    TOTALS.clear()

    async def go() -> None:
        for seed in SEEDS:
            await _scenario(InMemoryRunStore(), seed, runs=6, ops_per_run=300)

    asyncio.run(go())
    print(f"ledger property, in memory: {dict(TOTALS)}")
    assert TOTALS["ops"] >= 10_000 and TOTALS["examples"] == len(SEEDS), TOTALS
