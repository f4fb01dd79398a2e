"""Helpers for controller tests: settings, an in-process worker, waiting for a run."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from conclave.cluster.config import ModelSpec
from conclave.config import Settings
from conclave.controller.store import RunStore
from conclave.controller.worker import Worker, local_router
from conclave.schema import Run

TEST_KINDS = {
    "steps": "tests.integration.kinds_for_tests:STEPS",
    "crash": "tests.integration.kinds_for_tests:CRASH",
    "fail": "tests.integration.kinds_for_tests:FAIL",
}


def sim_settings(prefix: str, **kw: object) -> Settings:
    base: dict[str, object] = {
        "key_prefix": prefix,
        "lease_seconds": 1.0,
        "models": [ModelSpec(name="sim", engine="sim", options={"mode": "echo"})],
        "kinds": TEST_KINDS,
    }
    base.update(kw)
    return Settings.model_validate(base)


@contextlib.asynccontextmanager
async def running_worker(settings: Settings, url: str, name: str = "w-local") -> AsyncIterator[Worker]:
    w = Worker(settings, local_router(settings), redis_url=url, name=name)
    task = asyncio.ensure_future(w.run())
    try:
        yield w
    finally:
        w.stop()
        await asyncio.wait_for(task, 10)


async def wait_terminal(store: RunStore, rid: str, timeout: float = 30.0) -> Run:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        run = await store.get(rid)
        if run is not None and run.status.terminal:
            return run
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {rid} not finished after {timeout} s: {await store.get(rid)}")
