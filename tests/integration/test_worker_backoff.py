"""The worker's one backoff against a Redis outage (tenacity, in ``Worker._riding_out``): a worker
started before its Redis keeps retrying — past the Redis client's own reconnect attempts — and serves
runs once the server is up."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from conclave.controller.redis_server import EmbeddedRedis
from conclave.controller.redis_store import RedisRunStore
from conclave.controller.worker import Worker, connect, local_router
from conclave.schema import RunStatus, TaskSpec

from ._helpers import sim_settings, wait_terminal

pytestmark = pytest.mark.redis


async def test_a_worker_started_before_redis_waits_for_it(
    tmp_path: Path, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    srv = EmbeddedRedis(tmp_path / "data")  # not started: nothing listens on its port yet
    settings = sim_settings(prefix)
    worker = Worker(settings, local_router(settings), redis_url=srv.url, name="w-early")
    with caplog.at_level(logging.WARNING, logger="conclave.controller.worker"):
        task = asyncio.ensure_future(worker.run())
        # Longer than the Redis client's own reconnects (8 tries, about 4.5 s): the worker's backoff waits.
        await asyncio.sleep(6.0)
        assert not task.done(), task.exception() if task.done() else None
        srv.start()
        try:
            store = RedisRunStore(connect(srv.url), prefix, binary=connect(srv.url, decode=False))
            await store.ready()
            rid = (await store.submit(TaskSpec(kind="chat", input="hello after the outage"))).run.id
            run = await wait_terminal(store, rid)
            assert run.status == RunStatus.SUCCEEDED, run.stop_detail
            await store.close()
        finally:
            worker.stop()
            await asyncio.wait_for(task, 10)
            srv.stop()
    assert any("connecting failed, Redis unreachable" in r.getMessage() for r in caplog.records)
