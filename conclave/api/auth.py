"""Who is calling: API keys (Bearer or ``x-api-key``), each belonging to one tenant.

With auth on, every route but the public allow-list needs a key; a tenant sees only its own runs (another
tenant's run is a 404: its existence is not revealed). Admin routes need an admin key — a key created with
``admin=True``, or the deployment's bootstrap ``admin_key`` (a secret from the environment / the chart's
Secret), which is how the first keys are made. With auth off (local ``conclave up`` by default) every
request is tenant ``default`` and may administer.

Every protected route — the run API, the admin routes and the OpenAI-compatible endpoint alike —
depends on ``require_caller`` (``CallerDep`` / ``AdminDep`` as annotations), so there is exactly one
place that reads a key. It asks the app's ``Authenticator`` (``app.state.authenticator``, installed by
whoever builds the app with ``install_authenticator``). An app that installed none refuses every
protected request: forgetting to wire auth never opens a route. A refusal is an ``ApiError`` (401, or
403 for a non-admin on an admin route); the run API renders it in its own error shape, the OpenAI
router in OpenAI's.
"""

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from conclave.controller.service import RunService

from .errors import ApiError

__all__ = [
    "AdminDep",
    "Authenticator",
    "Caller",
    "CallerDep",
    "SecretDep",
    "bearer_secret",
    "caller_of",
    "install_authenticator",
    "presented_secret",
    "require_admin",
    "require_caller",
]


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


class Authenticator:
    """Who a secret belongs to. ``service`` is called per request (the service opens its store lazily
    in the serving process) and its settings say whether auth is on; ``Authenticator.disabled()`` reads
    no key at all."""

    def __init__(self, service: Callable[[], RunService] | None) -> None:
        self._service = service

    @classmethod
    def disabled(cls) -> "Authenticator":
        """Every caller is tenant ``default``: for apps that serve only local, trusted callers (tests,
        benchmarks), never for the API a deployment exposes."""
        return cls(None)

    async def caller(self, secret: str | None) -> Caller:
        """The caller ``secret`` identifies; ``ApiError(401)`` when auth is on and the key is missing,
        unknown or revoked (one message for the last two, so nothing is learnt about which)."""
        if self._service is None:
            return Caller(tenant="default", admin=True)
        svc = self._service()
        settings = svc.settings
        if not settings.auth:
            return Caller(tenant="default", admin=True)
        if not secret:
            raise ApiError(
                401, "unauthorized", "an API key is required: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'"
            )
        boot = settings.admin_key.get_secret_value() if settings.admin_key else None
        if boot and hmac.compare_digest(secret.encode(), boot.encode()):
            return Caller(tenant="default", key_id="admin_key", admin=True)
        info = await svc.authenticate(secret)
        if info is None:
            raise ApiError(401, "unauthorized", "the API key is not valid (unknown or revoked)")
        return Caller(tenant=info.tenant, key_id=info.id, admin=info.admin)


def install_authenticator(app: Any, authenticator: Authenticator) -> None:
    """Make ``authenticator`` the one ``require_caller`` asks for every request to ``app``."""
    app.state.authenticator = authenticator


# Declared as security schemes so /openapi.json says which operations need a key (and clients and
# fuzzers know how to send one); auto_error=False so that a missing key is our 401, in our shape.
_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`.")
_api_key = APIKeyHeader(name="x-api-key", auto_error=False, description="An API key in the `x-api-key` header.")


async def presented_secret(
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    x_api_key: Annotated[str | None, Depends(_api_key)],
) -> str | None:
    """The secret the request carries (``x-api-key``, else the bearer token), unchecked: for a route
    that also takes a secret of its own (``/metrics`` and its metrics token) before asking ``caller_of``."""
    return bearer_secret(f"Bearer {bearer.credentials}" if bearer else None, x_api_key)


async def caller_of(request: Request, secret: str | None) -> Caller:
    """Who ``secret`` is, by the app's one ``Authenticator``: the caller, or a 401."""
    authenticator = getattr(request.app.state, "authenticator", None)
    if not isinstance(authenticator, Authenticator):
        # A wiring bug, never a reason to serve: fail closed.
        raise ApiError(401, "unauthorized", "this server has no authenticator configured; every request is refused")
    return await authenticator.caller(secret)


async def require_caller(request: Request, secret: Annotated[str | None, Depends(presented_secret)]) -> Caller:
    """The FastAPI dependency of every protected route: the caller, or a 401."""
    return await caller_of(request, secret)


async def require_admin(caller: Annotated[Caller, Depends(require_caller)]) -> Caller:
    """Like ``require_caller``, and 403 unless the caller may administer."""
    if not caller.admin:
        raise ApiError(403, "forbidden", "this route needs an admin key")
    return caller


#: ``caller: CallerDep`` in a route's signature makes the route require a key (when auth is on).
CallerDep = Annotated[Caller, Depends(require_caller)]
#: ``caller: AdminDep``: an admin key.
AdminDep = Annotated[Caller, Depends(require_admin)]
#: ``secret: SecretDep``: the secret the request carries, not yet checked (see ``presented_secret``).
SecretDep = Annotated[str | None, Depends(presented_secret)]
