"""The budget ledger on a real Valkey: caps hold under any interleaving, nothing leaks after a crash."""

from __future__ import annotations

import asyncio
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from conclave.agents.meter import Meter
from conclave.budgets.caps import install_budget
from conclave.budgets.pricing import Pricing
from conclave.cluster.engines.sim import SimEngine
from conclave.cluster.router import LocalRouter
from conclave.controller.redis_server import EmbeddedRedis
from conclave.controller.redis_store import RedisRunStore
from conclave.core.ledger import RunLedger
from conclave.core.pending import PendingCommit
from conclave.schema import Budget, SubBudget, TaskSpec
from conclave.schema.chat import ChatRequest

from ._helpers import claimed_run

CAPS = {"input_tokens": 5_000, "output_tokens": 3_000, "model_calls": 60}


async def _ledger(redis_server: EmbeddedRedis, prefix: str, budget: Budget) -> tuple[RedisRunStore, RunLedger, Redis]:
    r = Redis.from_url(redis_server.url, decode_responses=True)
    store = RedisRunStore(r, prefix, binary=Redis.from_url(redis_server.url))
    rid, owner = await claimed_run(store, TaskSpec(kind="chat", input="x", budget=budget))
    ledger = RunLedger(store, rid, owner)
    await install_budget(ledger, budget)
    return store, ledger, r


def _check_caps(snap: object) -> None:
    for (scope, limit), cap in snap.caps.items():  # type: ignore[attr-defined]
        used = snap.used.get((scope, limit), 0)  # type: ignore[attr-defined]
        resv = snap.reserved.get((scope, limit), 0)  # type: ignore[attr-defined]
        assert used + resv <= cap, (scope, limit, used, resv, cap)
        assert resv >= 0


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**32 - 1), share=st.sampled_from([0.3, 0.5, 0.7]))
def test_100_concurrent_agents_never_overshoot_and_totals_are_exact(
    redis_server: EmbeddedRedis, seed: int, share: float
) -> None:
    async def scenario() -> None:
        prefix = f"lp{seed % 10**8}"
        budget = Budget(**CAPS, scopes={"a": SubBudget(share=share), "b": SubBudget(share=1 - share)})
        store, ledger, r = await _ledger(redis_server, prefix, budget)
        rng = random.Random(seed)
        committed = {"input_tokens": 0, "output_tokens": 0, "model_calls": 0}
        plans = [
            [
                (
                    rng.choice(["run/a", "run/b", "run/a", "run/b"]),
                    {"input_tokens": rng.randint(1, 400), "output_tokens": rng.randint(1, 300), "model_calls": 1},
                    rng.random(),
                    rng.random() < 0.25,
                )
                for _ in range(rng.randint(1, 4))
            ]
            for _ in range(100)
        ]

        async def agent(plan: list) -> None:
            for scope, ask, frac, release in plan:
                res, refusal = await ledger.reserve(scope, ask)
                if refusal is not None:
                    assert refusal.room < ask[refusal.limit]
                    continue
                await asyncio.sleep(0)  # let other agents interleave while the reservation is held
                _check_caps(await ledger.snapshot())
                used = {} if release else {k: max(0, int(v * frac)) for k, v in ask.items()}
                await store.commit(
                    ledger.rid, ledger.owner, PendingCommit(ledger=[RunLedger.commit_op(res, scope, used)])
                )
                for k, v in used.items():
                    committed[k] += v

        await asyncio.gather(*(agent(p) for p in plans))
        snap = await ledger.snapshot()
        _check_caps(snap)
        assert sum(snap.reserved.values()) == 0
        for k, v in committed.items():
            assert snap.used.get(("run", k), 0) == v
            assert snap.used.get(("run/a", k), 0) + snap.used.get(("run/b", k), 0) == v
        await r.aclose()

    asyncio.run(scenario())


LEASE_MS = 1500


async def test_reservation_of_a_crashed_worker_is_released_when_its_lease_ends(
    redis_server: EmbeddedRedis, prefix: str
) -> None:
    """While its worker renews the lease the run cannot be taken over and its hold stays; once the
    worker has died and the lease has run out, a rescuer that waits for the lease (XAUTOCLAIM with
    min-idle = the lease, as workers do) takes the run over, and that claim releases the hold."""
    budget = Budget(output_tokens=100)
    store, ledger, r = await _ledger(redis_server, prefix, budget)
    qid = await r.hget(store.keys.run(ledger.rid), "qid")
    # A TTL far beyond the test: only the lease's end may free this hold, not the expiry sweep.
    res, refusal = await ledger.reserve("run", {"output_tokens": 80}, ttl_s=3600)
    assert res and refusal is None

    async def held() -> int:
        return (await ledger.snapshot()).reserved.get(("run", "output_tokens"), 0)

    for _ in range(4):  # the worker is alive and renews: nobody can take the run
        await asyncio.sleep(LEASE_MS / 5000)
        assert await store.renew("tester", [(ledger.rid, ledger.owner, qid)]) == []
        assert await store.reclaim("rescuer", LEASE_MS, 10) == []
    assert await held() == 80
    # The worker dies here: no commit, no release, no renewal. Its lease has not ended yet ...
    assert await store.reclaim("rescuer", LEASE_MS, 10) == []
    assert await held() == 80
    _, refusal = await ledger.reserve("run", {"output_tokens": 30})
    assert refusal is not None and refusal.room == 20
    await asyncio.sleep(LEASE_MS / 1000 + 0.2)
    # ... now it has: the rescuer gets the run, and claiming it releases the dead worker's hold.
    entries = await store.reclaim("rescuer", LEASE_MS, 10)
    assert [e.rid for e in entries] == [ledger.rid]
    claim = await store.claim(ledger.rid, owner="owner-2", qid=entries[0].qid, worker="rescuer", max_attempts=3)
    assert claim.outcome == "ok"
    assert await held() == 0, "the dead worker's hold was released by the claim"
    ledger2 = RunLedger(store, ledger.rid, "owner-2")
    await install_budget(ledger2, budget)
    res2, refusal2 = await ledger2.reserve("run", {"output_tokens": 100})
    assert refusal2 is None and res2


async def test_expired_reservation_is_swept_even_without_a_new_claim(redis_server: EmbeddedRedis, prefix: str) -> None:
    store, ledger, r = await _ledger(redis_server, prefix, Budget(output_tokens=100))
    await ledger.reserve("run", {"output_tokens": 90}, ttl_s=0.2)
    _, refusal = await ledger.reserve("run", {"output_tokens": 50})
    assert refusal is not None and refusal.limit == "output_tokens" and refusal.room == 10
    await asyncio.sleep(0.3)
    res, refusal = await ledger.reserve("run", {"output_tokens": 50})
    assert refusal is None and res


async def test_meter_shrinks_max_tokens_to_what_fits_and_commits_actual_usage(
    redis_server: EmbeddedRedis, prefix: str
) -> None:
    store, ledger, r = await _ledger(redis_server, prefix, Budget(output_tokens=7))

    class Sink:
        ops: list = []

        async def ledger_op(self, op: dict) -> None:
            await store.commit(ledger.rid, ledger.owner, PendingCommit(ledger=[op]))

    router = LocalRouter({"sim": SimEngine({"mode": "echo"}, name="sim")})
    meter = Meter(ledger=ledger, pricing=Pricing(), router=router, sink=Sink())
    resp = await meter.chat(
        ChatRequest(messages=[{"role": "user", "content": " ".join(["w"] * 50)}], max_tokens=100), model="sim"
    )
    assert resp.usage.completion_tokens <= 7 and resp.choices[0].finish_reason == "length"
    snap = await ledger.snapshot()
    assert snap.used[("run", "output_tokens")] == resp.usage.completion_tokens
    assert sum(snap.reserved.values()) == 0
