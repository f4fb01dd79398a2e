"""API keys and the one dependency that turns a request into a tenant.

Keys are bearer tokens, stored only as SHA-256 hashes, each belonging to one tenant. A tenant sees
only its own runs; another tenant's run is a 404 (its existence is not revealed). With auth off
(local ``conclave up`` by default) every request is tenant ``default``.

Every protected route — the run API and the OpenAI-compatible endpoint alike — depends on
``require_tenant`` (``Tenant`` as an annotation), so there is exactly one place that reads a key.
It takes the key from ``x-api-key`` or ``Authorization: Bearer <key>`` and asks the app's
``Authenticator`` (``app.state.authenticator``, installed by whoever builds the app). An app that
installed none refuses every protected request: forgetting to wire auth never opens a route.
A refusal is an ``ApiError(401)``; the run API renders it in its own error shape, the OpenAI
router in OpenAI's.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from redis.asyncio import Redis

from conclave.api.errors import ApiError

__all__ = [
    "ApiKey",
    "Authenticator",
    "KeyStore",
    "NewKey",
    "Tenant",
    "hash_key",
    "install_authenticator",
    "require_tenant",
]

#: The tenant of every request when auth is off.
DEFAULT_TENANT = "default"


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


class Authenticator:
    """Who a key belongs to. ``keys`` is called per request (the key store opens its Redis
    connection lazily in the serving process); with ``enabled=False`` no key is read and every
    request is tenant ``default``."""

    def __init__(self, *, enabled: bool, keys: Callable[[], KeyStore] | None = None) -> None:
        if enabled and keys is None:
            raise ValueError("an enabled Authenticator needs a key store")
        self.enabled = enabled
        self._keys = keys

    @classmethod
    def disabled(cls) -> Authenticator:
        """No keys: for apps that serve only local, trusted callers (tests, benchmarks)."""
        return cls(enabled=False)

    async def tenant(self, secret: str | None) -> str:
        """The tenant of ``secret``; ``ApiError(401)`` when auth is on and the key is missing,
        unknown or revoked (one message for the last two, so a caller learns nothing about which)."""
        if not self.enabled:
            return DEFAULT_TENANT
        if not secret:
            raise ApiError(
                401, "unauthorized", "an API key is required: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'"
            )
        assert self._keys is not None
        info = await self._keys().lookup(secret)
        if info is None:
            raise ApiError(401, "unauthorized", "the API key is not valid (unknown or revoked)")
        return info.tenant


def install_authenticator(app: Any, authenticator: Authenticator) -> None:
    """Make ``authenticator`` the one ``require_tenant`` asks for every request to ``app``."""
    app.state.authenticator = authenticator


# Declared as security schemes so /openapi.json says which operations need a key (and clients and
# fuzzers know how to send one); auto_error=False so that a missing key is our 401, in our shape.
_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`.")
_api_key = APIKeyHeader(name="x-api-key", auto_error=False, description="An API key in the `x-api-key` header.")


async def require_tenant(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    x_api_key: Annotated[str | None, Depends(_api_key)],
) -> str:
    """The FastAPI dependency of every protected route: the caller's tenant, or a 401."""
    authenticator = getattr(request.app.state, "authenticator", None)
    if not isinstance(authenticator, Authenticator):
        # A wiring bug, never a reason to serve: fail closed.
        raise ApiError(401, "unauthorized", "this server has no authenticator configured; every request is refused")
    secret = (x_api_key or "").strip() or (bearer.credentials.strip() if bearer is not None else None)
    return await authenticator.tenant(secret)


#: ``tenant: Tenant`` in a route's signature makes the route require a key (when auth is on).
Tenant = Annotated[str, Depends(require_tenant)]
