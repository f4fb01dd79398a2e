"""Chaos: 30 runs in flight while worker processes are SIGKILLed at random points, 10 times."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
from pathlib import Path

import pytest
from redis.asyncio import Redis

from conclave.controller.redis_server import EmbeddedRedis
from conclave.controller.redis_store import RedisRunStore
from conclave.schema import RunStatus, TaskSpec
from tests.integration._helpers import wait_terminal
from tests.integration.test_controller_crash import _worker_proc

pytestmark = [pytest.mark.slow, pytest.mark.redis]

RUNS, STEPS, KILLS, WORKERS = 30, 10, 10, 3
# Each worker takes 10 runs, so a kill hits a third of them; a run may sit on several victims in a
# row, so the poison threshold is set above what this much chaos can do to an innocent run.
ENV = {"CONCLAVE_WORKER_CONCURRENCY": "10", "CONCLAVE_MAX_ATTEMPTS": "12"}


async def test_thirty_runs_survive_ten_random_worker_kills(
    redis_server: EmbeddedRedis, redis: Redis, prefix: str, tmp_path: Path
) -> None:
    rng = random.Random(7)
    store = RedisRunStore(redis, prefix, binary=Redis.from_url(redis_server.url))
    await store.ready()
    ids = []
    for _ in range(RUNS):
        run = (
            await store.submit(
                TaskSpec(kind="steps", input="x", model="sim", options={"n": STEPS, "sleep": 0.6, "model_calls": True})
            )
        ).run
        ids.append(run.id)
    procs = [_worker_proc(redis_server.url, prefix, f"w{i}", tmp_path, **ENV) for i in range(WORKERS)]
    kills = 0
    try:
        while kills < KILLS:
            await asyncio.sleep(rng.uniform(0.8, 2.0))
            victim = rng.randrange(WORKERS)
            os.kill(procs[victim].pid, signal.SIGKILL)
            procs[victim].wait()
            kills += 1
            procs[victim] = _worker_proc(redis_server.url, prefix, f"w{victim}-{kills}", tmp_path, **ENV)
        runs = [await wait_terminal(store, rid, timeout=180) for rid in ids]
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    assert kills == KILLS
    assert [r.status for r in runs] == [RunStatus.SUCCEEDED] * RUNS, [
        (r.id, r.status, r.error) for r in runs if r.status != RunStatus.SUCCEEDED
    ]
    repeated = 0
    for r in runs:
        counts = [int(await redis.get(f"{prefix}:test:count:{r.id}:{i}") or 0) for i in range(STEPS)]
        assert min(counts) >= 1
        repeated += sum(c - 1 for c in counts)
        # A step re-executes only if it was in flight when its worker died: at most once per attempt.
        assert sum(c - 1 for c in counts) <= r.attempts - 1, (r.id, counts, r.attempts)
        events = await store.events(r.id)
        assert [e.id for e in events] == list(range(1, len(events) + 1))
        assert [e.data["step"] for e in events if e.type == "log"] == list(range(STEPS))
        # Ledger totals equal the committed usage: one committed model call per committed step.
        assert r.usage.model_calls == STEPS, (r.id, r.usage)
    resumed = sum(r.attempts - 1 for r in runs)
    print(
        f"\nchaos: {RUNS} runs, {KILLS} worker kills, {resumed} resumptions, {repeated} in-flight steps re-run, 0 events lost"
    )
