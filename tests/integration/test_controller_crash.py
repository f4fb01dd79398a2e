"""Crash recovery with real worker processes killed by SIGKILL, and a Redis server restart."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from conclave.controller.redis_server import EmbeddedRedis
from conclave.controller.redis_store import RedisRunStore
from conclave.controller.worker import connect
from conclave.schema import RunStatus, TaskSpec

from ._helpers import TEST_KINDS, running_worker, sim_settings, wait_terminal

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]


def _worker_proc(url: str, prefix: str, name: str, tmp: Path, **extra_env: str) -> subprocess.Popen[bytes]:
    cfg = tmp / "conclave.toml"
    if not cfg.exists():
        cfg.write_text('[[models]]\nname = "sim"\nengine = "sim"\n')
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        CONCLAVE_KEY_PREFIX=prefix,
        CONCLAVE_LEASE_SECONDS="1",
        CONCLAVE_MAX_ATTEMPTS="3",
        CONCLAVE_KINDS=",".join(f"{k}={v}" for k, v in TEST_KINDS.items()),
        CONCLAVE_HOME=str(tmp / "home"),
    )
    env.update(extra_env)
    return subprocess.Popen(
        [sys.executable, "-m", "conclave.controller.worker", "--config", str(cfg), "--redis-url", url, "--name", name],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture
async def store(redis_server: EmbeddedRedis, redis: Redis, prefix: str) -> RedisRunStore:
    s = RedisRunStore(redis, prefix, binary=Redis.from_url(redis_server.url))
    await s.ready()
    return s


async def test_killed_worker_run_resumes_elsewhere_each_committed_step_once(
    store: RedisRunStore, redis_server: EmbeddedRedis, redis: Redis, prefix: str, tmp_path: Path
) -> None:
    n = 12
    run = (await store.submit(TaskSpec(kind="steps", input="x", options={"n": n, "sleep": 0.15}))).run
    proc = _worker_proc(redis_server.url, prefix, "victim", tmp_path)
    try:
        # Wait until the victim has committed a few steps, then kill it mid-run.
        seen: list[int] = []
        deadline = time.monotonic() + 60
        while len(seen) < 4 and time.monotonic() < deadline:
            seen = [e.data["step"] for e in await store.events(run.id) if e.type == "log"]
            await asyncio.sleep(0.05)
        assert len(seen) >= 4, "the victim worker did not start the run"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_after = len(seen)
        async with running_worker(sim_settings(prefix), redis_server.url, "rescuer"):
            done = await wait_terminal(store, run.id, timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert done.status == RunStatus.SUCCEEDED, done
    assert done.output == f"sum={sum(i * i for i in range(n))}"
    assert done.attempts == 2
    counts = [int(await redis.get(f"{prefix}:test:count:{run.id}:{i}") or 0) for i in range(n)]
    # Committed steps ran once; only the step in flight at the kill may have started twice.
    assert all(c >= 1 for c in counts)
    assert sum(c - 1 for c in counts) <= 1, counts
    assert all(c == 1 for c in counts[: killed_after - 1]), counts
    events = await store.events(run.id)
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    step_events = [e.data["step"] for e in events if e.type == "log"]
    assert step_events == list(range(n)), "each committed step's event exactly once, in order"
    assert [e.type for e in events].count("run.resumed") == 1
    ws = await redis.hgetall(f"{prefix}:run:{run.id}:ws")
    assert sorted(ws) == sorted(f"steps/{i}.txt" for i in range(n))


async def test_poison_run_is_dead_lettered_after_max_attempts(
    store: RedisRunStore, redis_server: EmbeddedRedis, redis: Redis, prefix: str, tmp_path: Path
) -> None:
    run = (await store.submit(TaskSpec(kind="crash", input="x"))).run
    for i in range(6):
        got = await store.get(run.id)
        assert got is not None
        if got.status.terminal:
            break
        proc = _worker_proc(redis_server.url, prefix, f"w{i}", tmp_path)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    done = await wait_terminal(store, run.id, timeout=30)
    assert done.status == RunStatus.FAILED and done.stop_reason == "crashed"
    assert done.error and "died" in done.error
    assert int(await redis.get(f"{prefix}:test:crashes:{run.id}") or 0) == 3
    dead = await store.dead_letters()
    assert [d.rid for d in dead] == [run.id]


async def test_redis_restart_with_queued_runs_loses_nothing(tmp_path: Path, prefix: str) -> None:
    srv = EmbeddedRedis(tmp_path / "data", binary=os.environ.get("CONCLAVE_TEST_REDIS_SERVER") or None)
    srv.start()
    try:
        r = Redis.from_url(srv.url, decode_responses=True)
        store = RedisRunStore(r, prefix, binary=Redis.from_url(srv.url))
        await store.ready()
        ids = []
        for i in range(5):
            run = (await store.submit(TaskSpec(kind="chat", input=f"message {i}"))).run
            await store.durable()
            ids.append(run.id)
        srv.kill()  # an abrupt stop: only what was fsynced to the append-only file survives
        srv.start()
        await r.aclose()
        r = connect(srv.url)  # a client that retries, as the API's is
        store = RedisRunStore(r, prefix, binary=connect(srv.url, decode=False))
        assert [await store.get(i) is not None for i in ids] == [True] * 5
        async with running_worker(sim_settings(prefix), srv.url):
            # Restart again while the worker is serving: it must ride it out.
            srv.stop()
            srv.start()
            runs = [await wait_terminal(store, i, timeout=30) for i in ids]
        assert [x.status for x in runs] == [RunStatus.SUCCEEDED] * 5
        assert all(f"message {i}" in (x.output or "") for i, x in enumerate(runs))
        await r.aclose()
    finally:
        srv.stop()
