"""Chaos: workers talk to Redis through a proxy that loses replies, resets connections and delays at
random. Every write the controller and the ledger make is safe to retry, so nothing is applied twice or
lost: 30 capped runs, ≥ 50 faults, 0 duplicated or lost events, ledger totals equal the committed usage,
every run ends."""

from __future__ import annotations

import pytest

from conclave.controller.redis_server import EmbeddedRedis
from conclave.controller.redis_store import RedisRunStore
from conclave.controller.worker import connect
from conclave.schema import Budget, RunStatus, TaskSpec
from tests.chaos.faultproxy import FaultProxy
from tests.integration._helpers import running_worker, sim_settings, wait_terminal

pytestmark = [pytest.mark.slow, pytest.mark.redis]

RUNS, STEPS = 30, 6


async def test_lost_replies_resets_and_delays_neither_duplicate_nor_lose_anything(
    redis_server: EmbeddedRedis, prefix: str
) -> None:
    proxy = FaultProxy(redis_server.port, p_lost_reply=0.02, p_reset=0.012, p_delay=0.02, seed=7)
    await proxy.start()
    direct = connect(redis_server.url)
    store = RedisRunStore(direct, prefix, binary=connect(redis_server.url, decode=False))
    await store.ready()
    try:
        ids = []
        for i in range(RUNS):
            spec = TaskSpec(
                kind="steps",
                input=f"run {i}",
                model="sim",
                budget=Budget(model_calls=STEPS + 2, output_tokens=10_000),
                options={"n": STEPS, "sleep": 0.05, "model_calls": True},
            )
            ids.append((await store.submit(spec)).run.id)
        settings = sim_settings(prefix, max_attempts=50)
        async with running_worker(settings, proxy.url, "w1"), running_worker(settings, proxy.url, "w2"):
            runs = [await wait_terminal(store, rid, timeout=240) for rid in ids]
        proxy.enabled = False
        print(f"fault proxy: {dict(proxy.counts)} over {RUNS} runs")
        assert proxy.faults >= 50, proxy.counts
        assert proxy.counts["lost_reply"] >= 10 and proxy.counts["reset"] >= 5, proxy.counts
        assert [r.status for r in runs] == [RunStatus.SUCCEEDED] * RUNS, [
            (r.id, r.status, r.stop_detail) for r in runs if r.status is not RunStatus.SUCCEEDED
        ]
        for r in runs:
            events = await store.events(r.id, count=10_000)
            ids_seen = [e.id for e in events]
            assert ids_seen == list(range(1, len(events) + 1)), f"{r.id}: event ids {ids_seen}"
            assert [e.data["step"] for e in events if e.type == "log"] == list(range(STEPS)), f"{r.id}: steps"
            assert sum(1 for e in events if e.type == "run.finished") == 1
            snap = await store.ledger_snapshot(r.id)
            assert snap.used[("run", "model_calls")] == STEPS == r.usage.model_calls
            assert snap.by[("model", "sim", "model_calls")] == STEPS
            assert snap.by[("model", "sim", "output_tokens")] == snap.used[("run", "output_tokens")]
            assert sum(snap.reserved.values()) == 0 and not snap.over
    finally:
        await proxy.stop()
        await direct.aclose()
