"""The run ledger of ``InMemoryRunStore`` (a test double): caps, all-scopes-at-once reservations
fenced by the owner token, holds that expire or are renewed, commits of actual usage with what did
not fit recorded as ``over`` — the promises of ``lua/ledger.lua``, ``reserve.lua`` and
``renew_holds.lua``. The tenant's and key's budgets (outer scopes) are ``MemoryTenants``'s."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from .memory_records import _Hold, _RunData
from .memory_tenants import MemoryTenants, OuterHold, outer_scopes
from .pending import LedgerOp
from .store_types import LeaseLost, LedgerSnapshot, Refusal, Reserved, RunCaps

__all__ = ["MemoryLedgerMixin"]


class MemoryLedgerMixin(MemoryTenants):
    """Uses ``InMemoryRunStore``'s ``_runs``."""

    _runs: dict[str, _RunData]

    def _release(self, d: _RunData, res_id: str) -> list[OuterHold]:
        hold = d.holds.pop(res_id, None)
        if hold is None:
            return []
        for scope, held in hold.held.items():
            for limit, amount in held.items():
                d.reserved[(scope, limit)] = d.reserved.get((scope, limit), 0) - amount
        self._outer_release(hold.outer)
        return hold.outer

    def _outer_of(self, d: _RunData) -> list[str]:
        return outer_scopes(d.run.tenant, d.key_id)

    def _release_where(self, d: _RunData, keep: Any) -> None:
        for res_id in [r for r, h in d.holds.items() if not keep(h)]:
            self._release(d, res_id)

    def _ledger_commit(self, d: _RunData, op: LedgerOp, now: float) -> None:
        outer = self._release(d, op.res) if op.res else []
        for scope in op.scopes:
            for limit, amount in op.used.items():
                n = int(amount)
                if not n:
                    continue
                cap = d.caps.get((scope, limit))
                if cap is None:
                    d.used[(scope, limit)] = d.used.get((scope, limit), 0) + n
                    continue
                room = max(cap - d.used.get((scope, limit), 0) - d.reserved.get((scope, limit), 0), 0)
                fits = min(n, room)
                d.used[(scope, limit)] = d.used.get((scope, limit), 0) + fits
                if n > fits:
                    d.over[(scope, limit)] = d.over.get((scope, limit), 0) + n - fits
        for key, amount in op.by.items():
            if amount:
                dim, rest = key.split("|", 1)
                name, _, metric = rest.rpartition("|")
                d.by[(dim, name, metric)] = d.by.get((dim, name, metric), 0) + int(amount)
        if op.used:
            self._outer_use(self._outer_of(d), op.used, op.by, now, outer)

    async def set_caps(self, rid: str, owner: str, caps: Mapping[str, int]) -> RunCaps:
        d = self._runs[rid]
        for k, v in caps.items():
            scope, _, limit = k.rpartition("|")
            d.caps.setdefault((scope, limit), int(v))
        if owner:
            self._release_where(d, lambda h: h.owner == owner)
        return RunCaps(own=frozenset(d.caps), outer=self._outer_budgeted(d))

    def _outer_budgeted(self, d: _RunData) -> bool:
        return any(s in self._budgets for s in self._outer_of(d))

    async def renew_holds(self, runs: Sequence[tuple[str, str]], *, ttl_s: float) -> set[str]:
        now = time.time()
        outer: set[str] = set()
        for rid, owner in runs:
            d = self._runs.get(rid)
            if d is None or d.owner != owner:
                continue
            for hold in d.holds.values():
                hold.expires = now + ttl_s
            if self._outer_budgeted(d):
                outer.add(rid)
        return outer

    async def reserve(
        self,
        rid: str,
        owner: str,
        res_id: str,
        *,
        scopes: Sequence[str],
        amounts: Mapping[str, int],
        ttl_s: float,
    ) -> Reserved | Refusal:
        d = self._runs[rid]
        if res_id in d.holds:
            return Reserved(_view(d, scopes))  # retried
        if d.owner != owner:
            raise LeaseLost(rid)
        now = time.time()
        self._release_where(d, lambda h: h.expires > now)
        held: dict[str, dict[str, int]] = {}
        for scope in scopes:
            for limit, amount in amounts.items():
                cap = d.caps.get((scope, limit))
                if cap is None:
                    continue
                room = cap - d.used.get((scope, limit), 0) - d.reserved.get((scope, limit), 0)
                if int(amount) > room:
                    return Refusal(scope=scope, limit=limit, room=max(room, 0))
                held.setdefault(scope, {})[limit] = int(amount)
        outer, refusal = self._outer_reserve(self._outer_of(d), amounts, now)
        if refusal is not None:
            return refusal
        if not held and not outer:
            return Reserved(_view(d, scopes))
        for scope, h in held.items():
            for limit, amount in h.items():
                d.reserved[(scope, limit)] = d.reserved.get((scope, limit), 0) + amount
        d.holds[res_id] = _Hold(owner=owner, expires=now + ttl_s, held=held, outer=outer)
        return Reserved(_view(d, scopes))

    async def ledger_snapshot(self, rid: str) -> LedgerSnapshot:
        d = self._runs.get(rid)
        if d is None:
            return LedgerSnapshot()
        return LedgerSnapshot(
            caps=dict(d.caps),
            used=dict(d.used),
            reserved=dict(d.reserved),
            over=dict(d.over),
            by=dict(d.by),
        )


def _view(d: _RunData, scopes: Sequence[str]) -> LedgerSnapshot:
    """The caps, usage and holds of ``scopes`` (what ``reserve`` answers with)."""
    want = set(scopes)

    def pick(m: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
        return {k: v for k, v in m.items() if k[0] in want}

    return LedgerSnapshot(caps=pick(d.caps), used=pick(d.used), reserved=pick(d.reserved))
