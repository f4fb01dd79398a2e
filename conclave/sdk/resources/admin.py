"""``client.admin``: API keys (the admin routes; they need an admin key when auth is on)."""

from __future__ import annotations

from conclave.schema import ApiKey, NewKey, NewKeyRequest

from ..request import Call, model, model_list, path
from ..resource import Resource, TransportT, endpoint

__all__ = ["Admin"]


def create_key(tenant: str, *, name: str = "", admin: bool = False) -> Call[NewKey]:
    """A new key for ``tenant``; its secret (``.key``) is in this answer only."""
    body = NewKeyRequest(tenant=tenant, name=name, admin=admin)
    return Call("POST", "/v1/admin/keys", model(NewKey), json=body.model_dump(mode="json"))


def list_keys(tenant: str | None = None) -> Call[list[ApiKey]]:
    """Every key (of ``tenant`` when given), revoked ones included."""
    return Call("GET", "/v1/admin/keys", model_list(ApiKey), params={"tenant": tenant or None})


def revoke_key(key_id: str) -> Call[ApiKey]:
    """Revoke a key: requests with it are refused from now on."""
    return Call("POST", path("/v1/admin/keys/{}/revoke", key_id), model(ApiKey))


class Admin(Resource[TransportT]):
    """API keys."""

    create_key = endpoint(create_key)
    list_keys = endpoint(list_keys)
    revoke_key = endpoint(revoke_key)
