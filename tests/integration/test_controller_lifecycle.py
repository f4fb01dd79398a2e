"""Run lifecycle on a real Valkey with an in-process worker."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from conclave.controller.redis_server import EmbeddedRedis
from conclave.controller.redis_store import RedisRunStore
from conclave.schema import Budget, RunStatus, TaskSpec

from ._helpers import running_worker, sim_settings, wait_terminal

pytestmark = pytest.mark.redis


@pytest.fixture
async def store(redis_server: EmbeddedRedis, redis: Redis, prefix: str) -> RedisRunStore:
    rb = Redis.from_url(redis_server.url)
    s = RedisRunStore(redis, prefix, binary=rb)
    await s.ready()
    return s


async def test_chat_run_goes_queued_running_succeeded_with_gapless_events(
    store: RedisRunStore, redis_server: EmbeddedRedis, prefix: str
) -> None:
    _sub = await store.submit(TaskSpec(kind="chat", input="hello there world"))
    run, created = _sub.run, _sub.created
    assert created and run.status == RunStatus.QUEUED
    async with running_worker(sim_settings(prefix), redis_server.url):
        done = await wait_terminal(store, run.id)
    assert done.status == RunStatus.SUCCEEDED, done
    assert done.output and "hello there world" in done.output
    events = await store.events(run.id)
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    types = [e.type for e in events]
    assert types[0] == "run.queued" and types[1] == "run.started" and types[-1] == "run.finished"
    assert "model.call" in types
    assert done.usage.model_calls == 1 and done.usage.input_tokens > 0
    assert done.cost is not None and done.cost.by_model["sim"].usage.model_calls == 1


async def test_multi_step_run_commits_each_step_once_with_workspace(
    store: RedisRunStore, redis_server: EmbeddedRedis, prefix: str, redis: Redis
) -> None:
    run = (await store.submit(TaskSpec(kind="steps", input="x", options={"n": 4}))).run
    async with running_worker(sim_settings(prefix), redis_server.url):
        done = await wait_terminal(store, run.id)
    assert done.status == RunStatus.SUCCEEDED and done.output == "sum=14"
    counts = [int(await redis.get(f"{prefix}:test:count:{run.id}:{i}") or 0) for i in range(4)]
    assert counts == [1, 1, 1, 1]
    ws = await redis.hgetall(f"{prefix}:run:{run.id}:ws")
    assert ws == {f"steps/{i}.txt": f"step {i}" for i in range(4)}


async def test_idempotent_submit_returns_the_same_run(store: RedisRunStore) -> None:
    spec = TaskSpec(kind="chat", input="once", idempotency_key="k-1")
    _sub = await store.submit(spec)
    a, created_a = _sub.run, _sub.created
    _sub = await store.submit(spec)
    b, created_b = _sub.run, _sub.created
    assert created_a and not created_b and a.id == b.id
    assert (await store.queue_depth()).waiting == 1


async def test_cancel_of_a_queued_run_is_immediate(store: RedisRunStore) -> None:
    run = (await store.submit(TaskSpec(kind="chat", input="never runs"))).run
    assert (await store.cancel(run.id, tenant="default")).label == "cancelled"
    got = await store.get(run.id)
    assert got is not None and got.status == RunStatus.CANCELLED
    assert (await store.cancel("run_missing", tenant="default")).label == "missing"


async def test_cancel_reaches_a_running_worker_within_a_second(
    store: RedisRunStore, redis_server: EmbeddedRedis, prefix: str
) -> None:
    run = (
        await store.submit(TaskSpec(kind="steps", input="x", options={"n": 3, "block_step": 1, "block_seconds": 60}))
    ).run
    async with running_worker(sim_settings(prefix), redis_server.url):
        events = await store.events(run.id, after=0, block_ms=5000)
        while not any(e.type == "log" and e.data.get("step") == 0 for e in events):
            events += await store.events(run.id, after=events[-1].id, block_ms=5000)
        assert (await store.cancel(run.id, tenant="default")).label == "cancelling"
        done = await wait_terminal(store, run.id, timeout=5)
    assert done.status == RunStatus.CANCELLED and done.stop_reason == "cancelled"
    assert done.output == "1 steps"  # the partial result is kept
    # The run finished well inside the 60 s step; the event log says why.
    types = [e.type for e in await store.events(run.id)]
    assert "run.cancel_requested" in types and types[-1] == "run.finished"


async def test_lease_is_renewed_under_a_step_longer_than_the_lease(
    store: RedisRunStore, redis_server: EmbeddedRedis, prefix: str
) -> None:
    """A 3 s step with a 1 s lease: a second worker must not take the run over."""
    run = (
        await store.submit(TaskSpec(kind="steps", input="x", options={"n": 2, "block_step": 0, "block_seconds": 3}))
    ).run
    settings = sim_settings(prefix)
    async with running_worker(settings, redis_server.url, "w-a"), running_worker(settings, redis_server.url, "w-b"):
        done = await wait_terminal(store, run.id, timeout=20)
    assert done.status == RunStatus.SUCCEEDED and done.attempts == 1
    types = [e.type for e in await store.events(run.id)]
    assert "run.resumed" not in types


async def test_failing_body_is_recorded_as_failed_without_retry(
    store: RedisRunStore, redis_server: EmbeddedRedis, prefix: str
) -> None:
    run = (await store.submit(TaskSpec(kind="fail", input="x"))).run
    async with running_worker(sim_settings(prefix), redis_server.url):
        done = await wait_terminal(store, run.id)
    assert done.status == RunStatus.FAILED and done.stop_reason == "error"
    assert done.error and "failed on purpose" in done.error and done.attempts == 1


async def test_tiny_output_budget_stops_chat_run_with_the_limit_named(
    store: RedisRunStore, redis_server: EmbeddedRedis, prefix: str
) -> None:
    spec = TaskSpec(kind="chat", input="a b c d e f g h i j k l", budget=Budget(output_tokens=3))
    run = (await store.submit(spec)).run
    async with running_worker(sim_settings(prefix), redis_server.url):
        done = await wait_terminal(store, run.id)
    assert done.cost is not None
    assert done.usage.output_tokens <= 3
    assert done.status in (RunStatus.SUCCEEDED, RunStatus.BUDGET_EXHAUSTED)
    if done.status == RunStatus.SUCCEEDED:
        assert done.stop_reason == "length"
    else:
        assert done.exhausted_limit == "output_tokens"


async def test_events_resume_after_a_last_id_without_gaps_or_duplicates(
    store: RedisRunStore, redis_server: EmbeddedRedis, prefix: str
) -> None:
    run = (await store.submit(TaskSpec(kind="steps", input="x", options={"n": 6}))).run
    async with running_worker(sim_settings(prefix), redis_server.url):
        await wait_terminal(store, run.id)
    first = await store.events(run.id, count=3)
    rest = await store.events(run.id, after=first[-1].id)
    ids = [e.id for e in first + rest]
    assert ids == list(range(1, len(ids) + 1)) and len(set(ids)) == len(ids)


async def test_hundreds_of_concurrent_runs_do_not_exhaust_the_connection_pool(
    store: RedisRunStore, redis_server: EmbeddedRedis, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """redis-py's default pool raised "Too many connections" past 100 concurrent commands; those
    runs were left for a lease-long reclaim, logged as Redis being unreachable."""
    import asyncio
    import logging

    caplog.set_level(logging.WARNING, logger="conclave")
    ids = [
        r.run.id
        for r in await asyncio.gather(
            *(store.submit(TaskSpec(kind="steps", input="x", options={"n": 3, "sleep": 0.2})) for _ in range(60))
        )
    ]
    ids += [
        r.run.id
        for r in await asyncio.gather(
            *(store.submit(TaskSpec(kind="steps", input="x", options={"n": 3, "sleep": 0.2})) for _ in range(60))
        )
    ]
    ids += [
        r.run.id
        for r in await asyncio.gather(
            *(store.submit(TaskSpec(kind="steps", input="x", options={"n": 3, "sleep": 0.2})) for _ in range(60))
        )
    ]
    async with running_worker(sim_settings(prefix, worker_concurrency=400, lease_seconds=30), redis_server.url):
        runs = [await wait_terminal(store, rid, timeout=60) for rid in ids]
    assert [r.status for r in runs] == [RunStatus.SUCCEEDED] * 180
    assert max(r.attempts for r in runs) == 1
    trouble = [
        r.getMessage() for r in caplog.records if "unreachable" in r.getMessage() or "Too many" in r.getMessage()
    ]
    assert trouble == []
