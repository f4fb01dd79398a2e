"""Who is calling: API keys (Bearer or ``x-api-key``), each belonging to one tenant.

With auth on, every route but the public allow-list needs a key; a tenant sees only its own runs (another
tenant's run is a 404: its existence is not revealed). Admin routes need an admin key — a key created with
``admin=True``, or the deployment's bootstrap ``admin_key`` (a secret from the environment / the chart's
Secret), which is how the first keys are made. With auth off (local ``conclave up`` by default) every
request is tenant ``default`` and may administer.
"""

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header

from conclave.controller.service import RunService

from .errors import ApiError

__all__ = ["Caller", "admin_dependency", "bearer_secret", "caller_dependency"]


@dataclass(frozen=True)
class Caller:
    tenant: str
    key_id: str | None = None
    admin: bool = False


def bearer_secret(authorization: str | None, x_api_key: str | None) -> str | None:
    if x_api_key:
        return x_api_key.strip()
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


def caller_dependency(service: Callable[[], RunService]) -> Callable[..., Any]:
    """A FastAPI dependency resolving the caller (401 without a valid key when auth is on)."""

    async def caller(
        authorization: Annotated[str | None, Header()] = None,
        x_api_key: Annotated[str | None, Header()] = None,
    ) -> Caller:
        svc = service()
        settings = svc.settings
        if not settings.auth:
            return Caller(tenant="default", admin=True)
        secret = bearer_secret(authorization, x_api_key)
        if not secret:
            raise ApiError(401, "unauthorized", "an API key is required: send 'Authorization: Bearer <key>'")
        boot = settings.admin_key.get_secret_value() if settings.admin_key else None
        if boot and hmac.compare_digest(secret.encode(), boot.encode()):
            return Caller(tenant="default", key_id="admin_key", admin=True)
        info = await svc.authenticate(secret)
        if info is None:
            raise ApiError(401, "unauthorized", "the API key is not valid (unknown or revoked)")
        return Caller(tenant=info.tenant, key_id=info.id, admin=info.admin)

    return caller


def admin_dependency(service: Callable[[], RunService]) -> Callable[..., Any]:
    """Like ``caller_dependency``, and 403 unless the caller may administer."""
    resolve = caller_dependency(service)

    async def admin(caller: Annotated[Caller, Depends(resolve)]) -> Caller:
        if not caller.admin:
            raise ApiError(403, "forbidden", "this route needs an admin key")
        return caller

    return admin
