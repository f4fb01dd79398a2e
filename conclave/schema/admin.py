"""Tenants and API keys: who may call, as records the admin API, the SDK, the CLI and the store share."""

from __future__ import annotations

from pydantic import Field

from conclave.schema.base import StrictModel

__all__ = ["ApiKey", "NewKey", "NewKeyRequest"]


class ApiKey(StrictModel):
    """An API key as stored: the secret itself is never kept, only its SHA-256 hash (the store's key)."""

    id: str
    tenant: str
    name: str = ""
    created_at: float
    revoked: bool = False
    admin: bool = Field(default=False, description="May manage keys and tenants (the admin API).")


class NewKey(StrictModel):
    """A key just created: ``key`` is the secret, shown once."""

    key: str = Field(description="The secret; shown once, stored only as a hash.")
    info: ApiKey


class NewKeyRequest(StrictModel):
    """What ``POST /v1/admin/keys`` takes."""

    tenant: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    name: str = Field(default="", max_length=200)
    admin: bool = False
