"""Chaos: a model replica is killed while runs are making metered calls through Ray Serve.

Calls in flight on the dead replica are retried on the other one; no reservation stays held: while
the runs are still going (not after ``finish``, which releases whatever is left), each run holds at
most the one reservation of the call it is making; and every run finishes with exactly one committed
model call per step.
"""

from __future__ import annotations

import asyncio

import pytest
import ray
from redis.asyncio import Redis

from conclave.cluster.config import ModelSpec
from conclave.cluster.deployment import deploy_models
from conclave.cluster.pool import ServeRouter
from conclave.cluster.retry import RetryPolicy
from conclave.controller.redis_server import EmbeddedRedis
from conclave.controller.redis_store import RedisRunStore
from conclave.controller.worker import Worker
from conclave.schema import Budget, RunStatus, TaskSpec
from tests.integration._helpers import sim_settings, wait_terminal

pytestmark = [pytest.mark.slow, pytest.mark.redis]

RUNS, STEPS = 12, 6


async def busy_replica(router: ServeRouter, model: str, timeout: float = 60.0) -> str:  # noqa: ASYNC109 - a polling helper
    """The actor name of a replica that answers ``whoami`` with a call in flight.

    Serve routes ``whoami`` like any call, to the less busy of the replicas, so the replica that
    answers can be one with no call at all (killing whichever replica answered once gave 0 retries,
    every run succeeding); only one that reports a call in flight is worth killing."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        info = await router.whoami(model)
        if info["inflight"] >= 1:
            return str(info["actor_name"])
        await asyncio.sleep(0.01)
    raise AssertionError(f"no replica of {model} reported a call in flight within {timeout} s")


@pytest.mark.usefixtures("ray_cluster")
async def test_replica_killed_under_load_calls_retried_and_holds_released(
    redis_server: EmbeddedRedis, redis: Redis, prefix: str
) -> None:
    from ray import serve

    app = f"models-{prefix}"
    spec = ModelSpec(name="simr", engine="sim", replicas=2, num_cpus=0, options={"mode": "echo", "latency_s": 0.15})
    deploy_models([spec], app_name=app)
    router = ServeRouter([spec], app_name=app, retry=RetryPolicy(attempts=4))
    settings = sim_settings(prefix, models=[spec], worker_concurrency=RUNS)
    store = RedisRunStore(redis, prefix, binary=Redis.from_url(redis_server.url))
    await store.ready()
    budget = Budget(model_calls=STEPS, output_tokens=100_000)
    ids = [
        (
            await store.submit(
                TaskSpec(
                    kind="steps", input="x", model="simr", budget=budget, options={"n": STEPS, "model_calls": True}
                )
            )
        ).run.id
        for _ in range(RUNS)
    ]
    worker = Worker(settings, router, redis_url=redis_server.url, name="w-serve")
    task = asyncio.ensure_future(worker.run())
    killed = asyncio.Event()
    most_held: dict[str, int] = dict.fromkeys(ids, 0)
    samples_after_kill = 0

    async def watch_holds() -> None:
        """Reservations open per run, sampled while it runs (a run's own call: at most one)."""
        nonlocal samples_after_kill
        while True:
            async with redis.pipeline(transaction=False) as p:
                for rid in ids:
                    p.hget(f"{prefix}:run:{rid}", "status")
                    p.hlen(f"{prefix}:run:{rid}:resv")
                got = await p.execute()
            for rid, status, held in zip(ids, got[0::2], got[1::2], strict=True):
                if status == "running":
                    most_held[rid] = max(most_held[rid], int(held))
                    samples_after_kill += killed.is_set()
            await asyncio.sleep(0.01)

    watcher = asyncio.ensure_future(watch_holds())
    try:
        victim = await busy_replica(router, "simr")
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        killed.set()
        runs = [await wait_terminal(store, rid, timeout=120) for rid in ids]
    finally:
        watcher.cancel()
        worker.stop()
        await task
        serve.delete(app)
    assert [r.status for r in runs] == [RunStatus.SUCCEEDED] * RUNS, [
        (r.id, r.status, r.stop_detail) for r in runs if r.status != RunStatus.SUCCEEDED
    ]
    assert router.retries >= 1, "no call was on the killed replica"
    assert samples_after_kill > 0, "the runs were not watched while running after the kill"
    # While running, never more than the one hold of the call in flight: no failed attempt left one.
    assert max(most_held.values()) <= 1, most_held
    for r in runs:
        # exactly one committed call per step, though some attempts died with the replica
        assert r.usage.model_calls == STEPS
