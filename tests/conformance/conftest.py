"""The ``store`` fixture every contract suite here runs on: one backend per parameter (the in-memory
store, and the Redis store on the session's server)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from conclave.controller.redis_server import EmbeddedRedis
from conclave.controller.redis_store import RedisRunStore
from conclave.core.memory import InMemoryRunStore
from conclave.core.store import RunStore

BACKENDS = ["memory", pytest.param("redis", marks=pytest.mark.redis)]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[RunStore]:
    if request.param == "memory":
        s: RunStore = InMemoryRunStore()
    else:
        server: EmbeddedRedis = request.getfixturevalue("redis_server")
        s = RedisRunStore(
            Redis.from_url(server.url, decode_responses=True),
            f"c{secrets.token_hex(4)}",
            binary=Redis.from_url(server.url),
        )
    await s.ready()
    yield s
    await s.close()
