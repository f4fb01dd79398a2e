"""API keys: bearer tokens, stored only as SHA-256 hashes, each belonging to one tenant.

A tenant sees only its own runs; another tenant's run is a 404 (its existence is not revealed).
With auth off (local ``conclave up`` by default) every request is tenant ``default``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Any

from pydantic import BaseModel, Field
from redis.asyncio import Redis

__all__ = ["ApiKey", "KeyStore", "hash_key"]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKey(BaseModel):
    id: str
    tenant: str
    name: str = ""
    created_at: float
    revoked: bool = False


class NewKey(BaseModel):
    key: str = Field(description="The secret; shown once, stored only as a hash.")
    info: ApiKey


class KeyStore:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self.r = redis
        self.key = f"{prefix}:apikeys"  # hash of key → record
        self.ids = f"{prefix}:apikey_ids"  # id → hash of key

    async def create(self, tenant: str, name: str = "") -> NewKey:
        secret = "cvk_" + secrets.token_urlsafe(32)
        info = ApiKey(id="key_" + secrets.token_hex(6), tenant=tenant, name=name, created_at=time.time())
        h = hash_key(secret)
        async with self.r.pipeline(transaction=True) as p:
            p.hset(self.key, h, info.model_dump_json())
            p.hset(self.ids, info.id, h)
            await p.execute()
        return NewKey(key=secret, info=info)

    async def lookup(self, secret: str) -> ApiKey | None:
        raw = await self.r.hget(self.key, hash_key(secret))
        if not raw:
            return None
        info = ApiKey.model_validate_json(raw)
        return None if info.revoked else info

    async def list(self, tenant: str | None = None) -> list[ApiKey]:
        rows = [ApiKey.model_validate_json(v) for v in (await self.r.hgetall(self.key)).values()]
        return sorted((k for k in rows if tenant is None or k.tenant == tenant), key=lambda k: k.created_at)

    async def revoke(self, key_id: str) -> bool:
        h = await self.r.hget(self.ids, key_id)
        if not h:
            return False
        raw = await self.r.hget(self.key, h)
        if not raw:
            return False
        data: dict[str, Any] = json.loads(raw)
        data["revoked"] = True
        await self.r.hset(self.key, h, json.dumps(data))
        return True
