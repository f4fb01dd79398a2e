"""Retention, as a part of the ``RunStore`` contract: nothing is kept for ever unless a policy says so.

- A policy is seconds a finished run is kept: a deployment-wide default and an optional one per tenant
  (the tenant's wins; ``None`` / 0: for ever).
- When a run ends (any terminal status, however it got there) it is scheduled for deletion at its end time
  plus the retention in force then; every key it has also carries a TTL a day past that, so nothing
  outlives the policy even if no sweeper runs.
- ``purge_expired`` deletes runs whose time has come — every key, and their entries in the tenant's indexes
  (lists, statuses, kinds, idempotency keys). ``purge_finished`` deletes a tenant's runs that ended more than
  ``older_than_s`` ago, whatever the policy. A run that has not ended is never purged.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["RetentionStore"]


class RetentionStore(Protocol):
    async def set_retention(self, tenant: str | None, seconds: float | None) -> None:
        """Set the default (``tenant`` None) or a tenant's retention; ``seconds`` None removes a tenant's
        override (the default applies) or makes the default "for ever"."""

    async def get_retention(self, tenant: str | None) -> float | None:
        """The retention in force for ``tenant`` (its own, else the default), or the default."""

    async def purge_expired(self, limit: int = 500) -> int:
        """Delete up to ``limit`` finished runs whose retention has passed; returns how many."""

    async def purge_finished(self, tenant: str, older_than_s: float) -> int:
        """Delete ``tenant``'s runs that ended more than ``older_than_s`` seconds ago; returns how many."""
