"""API keys for tests, made the way the admin API makes them (``RunService.create_key``)."""

from __future__ import annotations

from redis.asyncio import Redis

from conclave.controller.redis_store import RedisRunStore
from conclave.controller.service import RunService
from conclave.schema import NewKey

from ._helpers import sim_settings


async def new_key(redis_url: str, prefix: str, tenant: str, *, name: str = "", revoked: bool = False) -> NewKey:
    """A key of ``tenant`` in the store under ``prefix`` (revoked at once with ``revoked=True``)."""
    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        service = RunService(RedisRunStore(redis, prefix), sim_settings(prefix, auth=True))
        key = await service.create_key(tenant, name=name)
        if revoked:
            await service.revoke_key(key.info.id)
        return key
    finally:
        await redis.aclose()
