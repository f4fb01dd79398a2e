"""Helpers for controller tests: settings, an in-process worker, waiting for a run."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from conclave.cluster.config import ModelSpec
from conclave.config import Settings
from conclave.controller.redis_store import RedisRunStore
from conclave.controller.worker import Worker, local_router
from conclave.schema import Run
from tests._http import serve_http

TEST_KINDS = {
    "steps": "tests.integration.kinds_for_tests:STEPS",
    "crash": "tests.integration.kinds_for_tests:CRASH",
    "fail": "tests.integration.kinds_for_tests:FAIL",
    "effect_agent": "tests.integration.steer_tools:KIND",
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


async def wait_terminal(store: RedisRunStore, rid: str, timeout: float = 30.0) -> Run:  # noqa: ASYNC109 - a polling helper
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        run = await store.get(rid)
        if run is not None and run.status.terminal:
            return run
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {rid} not finished after {timeout} s: {await store.get(rid)}")


async def claimed_run(store: RedisRunStore, spec: object, owner: str = "owner-1") -> tuple[str, str]:
    """Submit a run and claim it as ``owner`` (as a worker would), without running it."""
    from conclave.schema import TaskSpec

    await store.ready()
    run = (await store.submit(spec if isinstance(spec, TaskSpec) else TaskSpec.model_validate(spec))).run
    entries = await store.read_new("tester", 100, 100)
    qid = next(e.qid for e in entries if e.rid == run.id)
    res = await store.claim(run.id, owner=owner, qid=qid, worker="tester", max_attempts=3)
    assert res.outcome == "ok", res
    return run.id, owner


__all__ = ["TEST_KINDS", "claimed_run", "running_worker", "serve_http", "sim_settings", "wait_terminal"]
