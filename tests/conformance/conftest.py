"""The ``store`` fixture every contract suite shares: one test per backend."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from conclave.controller.redis_server import EmbeddedRedis
from conclave.controller.redis_store import RedisRunStore
from conclave.core.memory import InMemoryRunStore
from conclave.core.store import ClaimOutcome, RunStore
from conclave.schema import TaskSpec

BACKENDS = ["memory", pytest.param("redis", marks=pytest.mark.redis)]


def redis_store(server: EmbeddedRedis) -> RedisRunStore:
    """A Redis-backed store on the test server, under a prefix of its own."""
    return RedisRunStore(
        Redis.from_url(server.url, decode_responses=True),
        f"c{secrets.token_hex(4)}",
        binary=Redis.from_url(server.url),
    )


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[RunStore]:
    s: RunStore = (
        InMemoryRunStore() if request.param == "memory" else redis_store(request.getfixturevalue("redis_server"))
    )
    await s.ready()
    yield s
    await s.close()


def spec(text: str = "hello", **kw: object) -> TaskSpec:
    return TaskSpec.model_validate({"kind": "chat", "input": text, **kw})


async def submit_and_claim(store: RunStore, owner: str = "o1", **kw: object) -> tuple[str, str]:
    run = (await store.submit(spec(**kw))).run  # type: ignore[arg-type]
    entries = await store.read_new("c1", 100, 100)
    qid = next(e.qid for e in entries if e.rid == run.id)
    claim = await store.claim(run.id, owner=owner, qid=qid, worker="w1", max_attempts=3)
    assert claim.outcome is ClaimOutcome.OK and claim.attempt == 1
    return run.id, qid


async def types(store: RunStore, rid: str) -> list[str]:
    return [e.type for e in await store.events(rid, count=10_000)]
