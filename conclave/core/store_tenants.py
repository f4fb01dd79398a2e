"""The ledger's scopes above a run, as a part of the ``RunStore`` contract.

A scope is ``tenant/<t>`` or ``key/<k>``. Its budget caps limits per period (``daily``, ``monthly``,
``none``), on the store's clock in UTC. The contract:

- **One cap for everything a tenant does.** A run's ``reserve`` holds the call's worst case in the run's
  scopes *and* in its tenant's and key's capped periods, atomically; so do calls outside any run
  (``reserve_call``, the OpenAI-compatible endpoint). Concurrent runs and endpoint calls of one tenant
  therefore never overshoot its cap together.
- **Usage is recorded where it was reserved.** A commit (``RunStore.commit``'s ledger ops, or
  ``commit_call``) releases the hold and adds the usage to the period the hold was made in; usage is recorded
  in every period whether or not it is capped, so spend is always readable.
- **A cap is never overshot.** Usage above the room a capped limit had is recorded as ``over``, not as
  used.
- **Periods reset by themselves.** A new period is a new counter: nothing has to run for a reset, and none
  can be lost.
- Retried calls apply once (a reservation by its id, a call's commit by its hold id).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from conclave.schema import Period, ScopeBudget, SpendLine, TenantSpend

from .money import from_pico
from .store_types import Refusal

__all__ = ["LIMITS", "TenantStore", "key_scope", "spend_lines", "tenant_scope"]

#: The limits a scope's budget may cap (``usd`` in pico-dollars in the ledger).
LIMITS = ("usd", "input_tokens", "output_tokens", "model_calls")


def tenant_scope(tenant: str) -> str:
    return f"tenant/{tenant}"


def key_scope(key_id: str) -> str:
    return f"key/{key_id}"


class TenantStore(Protocol):
    async def set_budget(self, scope: str, budget: ScopeBudget) -> None:
        """Replace the budget of ``scope`` (an empty budget removes every cap; spend is kept)."""

    async def get_budget(self, scope: str) -> ScopeBudget: ...

    async def spend(self, scope: str, period: Period) -> TenantSpend:
        """What ``scope`` spent in the current ``period`` (caps, used, held, left, over, by model)."""

    async def reserve_call(
        self, tenant: str, key_id: str | None, res_id: str, *, amounts: Mapping[str, int], ttl_s: float
    ) -> Refusal | None:
        """Hold a call made outside any run in its tenant's and key's capped periods, or refuse."""

    async def commit_call(
        self,
        tenant: str,
        key_id: str | None,
        res_id: str,
        *,
        used: Mapping[str, int],
        by: Mapping[str, int] | None = None,
    ) -> None:
        """Release the hold ``res_id`` (if any) and record the call's usage; once per hold id."""


def spend_lines(
    caps: Mapping[str, int], used: Mapping[str, int], reserved: Mapping[str, int], over: Mapping[str, int]
) -> list[SpendLine]:
    """One line per limit that is capped or was used, in ledger units turned into USD / counts."""
    lines = []
    for limit in LIMITS:
        if limit not in caps and not used.get(limit) and not reserved.get(limit) and not over.get(limit):
            continue
        scale = (lambda v: from_pico(v)) if limit == "usd" else float
        cap = caps.get(limit)
        u, r, o = used.get(limit, 0), reserved.get(limit, 0), over.get(limit, 0)
        lines.append(
            SpendLine(
                limit=limit,
                cap=None if cap is None else scale(cap),
                used=scale(u),
                reserved=scale(r),
                left=None if cap is None else scale(max(cap - u - r, 0)),
                over=scale(o),
            )
        )
    return lines
