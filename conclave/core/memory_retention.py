"""``RetentionStore`` in memory: the same policy and sweep as the Redis store."""

from __future__ import annotations

import time
from typing import Any

__all__ = ["MemoryRetention"]


class MemoryRetention:
    """Mixin of ``InMemoryRunStore``: its terminal transitions call ``_retire``."""

    _runs: dict[str, Any]
    _idem: dict[tuple[str, str], str]

    def _retention_init(self) -> None:
        self._retention: dict[str | None, float] = {}
        self._finished: dict[str, float] = {}
        self._expiring: dict[str, float] = {}

    def _retire(self, rid: str, tenant: str) -> None:
        now = time.time()
        self._finished[rid] = now
        ttl = self._retention.get(f"tenant:{tenant}", self._retention.get(None, 0.0))
        if ttl > 0:
            self._expiring[rid] = now + ttl

    def _purge(self, rid: str) -> bool:
        d = self._runs.get(rid)
        if d is None or not d.run.status.terminal:
            return False
        del self._runs[rid]
        self._finished.pop(rid, None)
        self._expiring.pop(rid, None)
        key = d.run.spec.idempotency_key
        if key and self._idem.get((d.run.tenant, key)) == rid:
            del self._idem[(d.run.tenant, key)]
        return True

    async def set_retention(self, tenant: str | None, seconds: float | None) -> None:
        field = None if tenant is None else f"tenant:{tenant}"
        if seconds is None or seconds <= 0:
            if tenant is None:
                self._retention[None] = 0.0
            else:
                self._retention.pop(field, None)
        else:
            self._retention[field] = float(seconds)

    async def get_retention(self, tenant: str | None) -> float | None:
        v = self._retention.get(f"tenant:{tenant}") if tenant is not None else None
        secs = v if v is not None else self._retention.get(None, 0.0)
        return secs if secs > 0 else None

    async def purge_expired(self, limit: int = 500) -> int:
        now = time.time()
        due = sorted((exp, rid) for rid, exp in self._expiring.items() if exp <= now)[:limit]
        return sum(1 for _, rid in due if self._purge(rid))

    async def purge_finished(self, tenant: str, older_than_s: float) -> int:
        cutoff = time.time() - older_than_s
        rids = [
            rid
            for rid, at in self._finished.items()
            if at <= cutoff and rid in self._runs and self._runs[rid].run.tenant == tenant
        ]
        return sum(1 for rid in rids if self._purge(rid))
