"""Caps from a budget: what the ledger must hold a run to, per scope and limit.

A ``Budget`` (and its nested ``scopes``) becomes ``{"<scope>|<limit>": cap}`` in ledger units: USD in
pico-dollars, tokens and calls as counts, ``tool:<name>`` per tool. A share applies to every limit of the
parent; explicit limits win over the share.
"""

from __future__ import annotations

import math

from conclave.core.ledger import ROOT, RunLedger
from conclave.schema import Budget, SubBudget
from conclave.schema.money import to_pico

__all__ = ["compute_caps", "install_budget"]


def _limits_of(b: Budget | SubBudget) -> dict[str, int]:
    out: dict[str, int] = {}
    if b.usd is not None:
        out["usd"] = to_pico(b.usd)
    for name in ("input_tokens", "output_tokens", "model_calls"):
        v = getattr(b, name)
        if v is not None:
            out[name] = int(v)
    for tool, n in (b.tool_calls or {}).items():
        out[f"tool:{tool}"] = int(n)
    return out


def compute_caps(budget: Budget | None) -> dict[str, int]:
    """``{"<scope>|<limit>": cap}`` for the run and every sub-scope; a share applies to every limit
    of the parent, explicit limits win over the share."""
    caps: dict[str, int] = {}
    if budget is None:
        return caps

    def walk(path: str, node: Budget | SubBudget, parent: dict[str, int] | None) -> None:
        mine: dict[str, int] = {}
        if parent is not None and isinstance(node, SubBudget) and node.share is not None:
            mine = {k: math.floor(v * node.share) for k, v in parent.items()}
        mine.update(_limits_of(node))
        for k, v in mine.items():
            caps[f"{path}|{k}"] = v
        for name, child in node.scopes.items():
            walk(f"{path}/{name}", child, mine)

    walk(ROOT, budget, None)
    return caps


async def install_budget(ledger: RunLedger, budget: Budget | None) -> None:
    """Give ``ledger`` the caps of ``budget`` (fields not set before; a resumed run keeps its caps)."""
    await ledger.set_caps(compute_caps(budget), wall_cap_s=budget.wall_seconds if budget else None)
