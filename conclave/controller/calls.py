"""Calls on the OpenAI-compatible endpoint, metered to the caller's tenant like a run's calls are.

Every request — a plain model call, streamed or not, or ``model="ensemble/<name>"`` — goes through the
agents' ``Meter`` over a ``CallLedger``: the request's own caps in memory (an ensemble's ceiling, see
``conclave.api.ceiling``) and its tenant's and key's budgets in the store (``RunStore.reserve_call`` /
``commit_call``), so a tenant's runs and its endpoint calls share one cap and no call goes uncharged.
A call the tenant's budget has no room for is refused before it is made (``QuotaExceeded`` → HTTP 429
``insufficient_quota``); a call that fits only partly gets a shorter ``max_tokens``, as in a run.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Mapping

from conclave.agents.meter import Meter
from conclave.budgets.pricing import Pricing
from conclave.core.ledger import HOLD_TTL_S, RunLedger, enclosing
from conclave.core.pending import LedgerOp
from conclave.core.router import ModelRouter
from conclave.core.store import LedgerSnapshot, Refusal, RunStore
from conclave.schema.chat import ChatChunk, ChatRequest, ChatResponse

__all__ = ["CallLedger", "EndpointCalls", "is_quota_refusal"]

ROOT = "run"


def is_quota_refusal(scope: str) -> bool:
    """A refusal by a tenant's or a key's budget (as opposed to a request's own ceiling)."""
    return scope.startswith(("tenant/", "key/"))


class CallLedger(RunLedger):
    """The ledger of one endpoint request. ``reserve`` holds a call's worst case first against the
    request's own caps (in memory; one event loop, no await between check and hold, so concurrent inner
    calls of an ensemble cannot overshoot them), then in the tenant's and key's budgets in the store;
    ``ledger_op`` (it is also the meter's commit sink) releases both and records the usage in both."""

    def __init__(self, store: RunStore, tenant: str, key_id: str | None, caps: Mapping[str, int] | None = None) -> None:
        super().__init__(store, f"call-{secrets.token_hex(6)}", tenant)
        self.tenant = tenant
        self.key_id = key_id
        self.outer = True  # every call reserves: the tenant's budget may bind it, and its usage is spend
        self.wall_cap_s = None
        self._caps = {(ROOT, limit): int(v) for limit, v in (caps or {}).items()}
        self._used: dict[tuple[str, str], int] = {}
        self._reserved: dict[tuple[str, str], int] = {}
        self._by: dict[tuple[str, str, str], int] = {}
        self._holds: dict[str, dict[tuple[str, str], int]] = {}

    async def reserve(
        self, scope: str, amounts: Mapping[str, int], *, ttl_s: float = HOLD_TTL_S
    ) -> tuple[str | None, Refusal | None]:
        held: dict[tuple[str, str], int] = {}
        for s in enclosing(scope):
            for limit, amount in amounts.items():
                cap = self._caps.get((s, limit))
                if cap is None:
                    continue
                room = cap - self._used.get((s, limit), 0) - self._reserved.get((s, limit), 0)
                if int(amount) > room:
                    return None, Refusal(scope=s, limit=limit, room=max(room, 0))
                held[(s, limit)] = int(amount)
        res_id = f"c{secrets.token_hex(8)}"
        for key, amount in held.items():
            self._reserved[key] = self._reserved.get(key, 0) + amount
        self._holds[res_id] = held
        refusal = await self.store.reserve_call(self.tenant, self.key_id, res_id, amounts=amounts, ttl_s=ttl_s)
        if refusal is not None:
            self._release(res_id)
            return None, refusal
        return res_id, None

    def _release(self, res_id: str) -> None:
        for key, amount in self._holds.pop(res_id, {}).items():
            self._reserved[key] -= amount

    async def ledger_op(self, op: LedgerOp) -> None:
        """Apply a commit op (``RunLedger.commit_op``): release its holds, add its usage everywhere."""
        self._release(op.res or "")
        for scope in op.scopes:
            for limit, amount in op.used.items():
                self._used[(scope, limit)] = self._used.get((scope, limit), 0) + int(amount)
        for field, amount in op.by.items():
            dim, name_metric = field.split("|", 1)
            name, _, metric = name_metric.rpartition("|")
            self._by[(dim, name, metric)] = self._by.get((dim, name, metric), 0) + int(amount)
        if op.res:
            await self.store.commit_call(self.tenant, self.key_id, op.res, used=op.used, by=op.by)

    async def set_caps(self, caps: Mapping[str, int], *, wall_cap_s: float | None = None) -> None:
        raise TypeError("a CallLedger's caps are fixed when it is made")

    async def snapshot(self) -> LedgerSnapshot:
        return LedgerSnapshot(
            caps=dict(self._caps), used=dict(self._used), reserved=dict(self._reserved), by=dict(self._by)
        )

    @property
    def open_holds(self) -> int:
        """Reservations not yet committed (0 once a request has finished)."""
        return len(self._holds)


class EndpointCalls:
    """Plain model calls on the endpoint, metered to the caller's tenant (ensembles: ``api/ingress``)."""

    def __init__(self, store: RunStore, router: ModelRouter, pricing: Pricing) -> None:
        self.store = store
        self.router = router
        self.pricing = pricing

    def meter(self, tenant: str, key_id: str | None, caps: Mapping[str, int] | None = None) -> Meter:
        ledger = CallLedger(self.store, tenant, key_id, caps)
        return Meter(ledger=ledger, pricing=self.pricing, router=self.router, sink=ledger)

    async def chat(self, request: ChatRequest, *, model: str, tenant: str, key_id: str | None) -> ChatResponse:
        return await self.meter(tenant, key_id).chat(request, model=model)

    def stream(self, request: ChatRequest, *, model: str, tenant: str, key_id: str | None) -> AsyncIterator[ChatChunk]:
        return self.meter(tenant, key_id).stream(request, model=model)
