"""Chaos: the Redis server is SIGKILLed and restarted (same data dir, append-only) under load."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from conclave.controller.redis_server import EmbeddedRedis
from conclave.controller.redis_store import RedisRunStore
from conclave.controller.worker import connect
from conclave.schema import RunStatus, TaskSpec
from tests.integration._helpers import running_worker, sim_settings, wait_terminal

pytestmark = [pytest.mark.slow, pytest.mark.redis]


async def test_runs_continue_after_redis_is_killed_and_restarted_under_load(tmp_path: Path, prefix: str) -> None:
    srv = EmbeddedRedis(tmp_path / "data", binary=os.environ.get("CONCLAVE_TEST_REDIS_SERVER") or None)
    srv.start()
    r = connect(srv.url)
    store = RedisRunStore(r, prefix, binary=connect(srv.url, decode=False))
    await store.ready()
    try:
        acknowledged = []
        for _ in range(20):
            run = (
                await store.submit(
                    TaskSpec(kind="steps", input="x", model="sim", options={"n": 8, "sleep": 0.25, "model_calls": True})
                )
            ).run
            await store.durable()
            acknowledged.append(run.id)
        settings = sim_settings(prefix, max_attempts=10)
        async with running_worker(settings, srv.url, "w1"), running_worker(settings, srv.url, "w2"):
            await asyncio.sleep(0.8)
            for _ in range(2):
                srv.kill()
                await asyncio.sleep(0.5)
                srv.start()
                await asyncio.sleep(1.0)
            runs = [await wait_terminal(store, rid, timeout=120) for rid in acknowledged]
        assert [x.status for x in runs] == [RunStatus.SUCCEEDED] * 20, [
            (x.id, x.status, x.error) for x in runs if x.status != RunStatus.SUCCEEDED
        ]
        for x in runs:
            events = await store.events(x.id)
            assert [e.id for e in events] == list(range(1, len(events) + 1))
            assert [e.data["step"] for e in events if e.type == "log"] == list(range(8))
            assert x.usage.model_calls == 8
    finally:
        await r.aclose()
        srv.stop()
