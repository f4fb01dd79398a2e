"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from conclave.controller.redis_server import EmbeddedRedis

from ._runs import Runs


@pytest.fixture
async def runs(redis: Redis, redis_server: EmbeddedRedis, prefix: str) -> AsyncIterator[Runs]:
    """Submit and claim runs and build their ``RunContext`` as a worker would (see ``_runs``)."""
    binary = Redis.from_url(redis_server.url, decode_responses=False)
    yield Runs(redis, binary, prefix)
    await binary.aclose()
