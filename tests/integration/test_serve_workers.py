"""Workers as a Ray Serve application on a real Ray cluster: replicas consume the queue."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from conclave.controller.redis_server import EmbeddedRedis
from conclave.controller.redis_store import RedisRunStore
from conclave.schema import RunStatus, TaskSpec

from ._helpers import sim_settings, wait_terminal


@pytest.mark.usefixtures("ray_cluster")
async def test_serve_worker_replicas_execute_runs(redis_server: EmbeddedRedis, redis: Redis, prefix: str) -> None:
    from ray import serve

    from conclave.controller.serve_worker import build_app

    settings = sim_settings(prefix)
    args = {
        "workers": 2,
        "settings": settings.model_dump(mode="json"),
        "redis_url": redis_server.url,
        "router": "local",
    }
    handle = serve.run(build_app(args), name=f"workers-{prefix}", route_prefix=None)
    try:
        store = RedisRunStore(redis, prefix, binary=Redis.from_url(redis_server.url))
        ids = [(await store.submit(TaskSpec(kind="steps", input="x", options={"n": 3}))).run.id for _ in range(6)]
        runs = [await wait_terminal(store, rid, timeout=60) for rid in ids]
        assert [r.status for r in runs] == [RunStatus.SUCCEEDED] * 6
        status = await handle.status.remote()
        assert status["name"].startswith("worker-")
    finally:
        serve.delete(f"workers-{prefix}")
