"""A run's cost breakdown from its ledger: totals, by model, tool, stage and agent, and each limit's state."""

from __future__ import annotations

from collections.abc import Mapping

from conclave.core.ledger import ROOT, RunLedger, limit_label
from conclave.core.money import PICO, from_pico
from conclave.core.store import LedgerSnapshot
from conclave.schema import Cost, CostLine, LimitStatus, Usage

__all__ = ["cost_from_snapshot", "ledger_cost"]

#: Metrics recorded in breakdowns (``by|<dim>|<name>|<metric>``).
METRICS = ("input_tokens", "output_tokens", "cached_tokens", "model_calls", "tool:<name>", "usd", "ms")


def _line(metrics: Mapping[str, int]) -> CostLine:
    tools = {k[5:]: v for k, v in metrics.items() if k.startswith("tool:") and k != "tool:*"}
    return CostLine(
        usage=Usage(
            input_tokens=metrics.get("input_tokens", 0),
            output_tokens=metrics.get("output_tokens", 0),
            cached_tokens=metrics.get("cached_tokens", 0),
            model_calls=metrics.get("model_calls", 0),
            tool_calls=tools,
        ),
        usd=from_pico(metrics.get("usd", 0)),
        seconds=metrics.get("ms", 0) / 1000.0,
    )


def cost_from_snapshot(
    snap: LedgerSnapshot, *, wall_cap_s: float | None = None, wall_seconds: float | None = None
) -> Cost:
    dims: dict[str, dict[str, dict[str, int]]] = {"model": {}, "tool": {}, "stage": {}, "agent": {}}
    for (dim, name, metric), v in snap.by.items():
        if dim in dims:
            m = dims[dim].setdefault(name, {})
            m[metric] = m.get(metric, 0) + v
    total = {limit: v for (scope, limit), v in snap.used.items() if scope == ROOT}
    total_line = _line(total)
    if wall_seconds is not None:
        total_line.seconds = wall_seconds
    limits: list[LimitStatus] = []
    exhausted: str | None = None
    for (scope, limit), cap in sorted(snap.caps.items()):
        u = snap.used.get((scope, limit), 0)
        rv = snap.reserved.get((scope, limit), 0)
        scale = PICO if limit == "usd" else 1
        left = cap - u - rv
        is_out = u >= cap
        limits.append(
            LimitStatus(
                scope=scope,
                limit=limit_label(limit),
                cap=cap / scale,
                used=u / scale,
                reserved=rv / scale,
                left=left / scale,
                exhausted=is_out,
            )
        )
        if is_out and exhausted is None and scope == ROOT:
            exhausted = limit_label(limit)
    if wall_cap_s is not None:
        spent = wall_seconds or 0.0
        limits.append(
            LimitStatus(
                scope=ROOT,
                limit="wall_seconds",
                cap=wall_cap_s,
                used=spent,
                reserved=0,
                left=max(0.0, wall_cap_s - spent),
                exhausted=spent >= wall_cap_s,
            )
        )
    return Cost(
        total=total_line,
        by_model={k: _line(v) for k, v in dims["model"].items()},
        by_tool={k: _line(v) for k, v in dims["tool"].items()},
        by_stage={k: _line(v) for k, v in dims["stage"].items()},
        by_agent={k: _line(v) for k, v in dims["agent"].items()},
        limits=limits,
        exhausted_limit=exhausted,
    )


async def ledger_cost(ledger: RunLedger, *, wall_seconds: float | None = None) -> Cost:
    """The cost breakdown of a run's ledger as it stands."""
    return cost_from_snapshot(await ledger.snapshot(), wall_cap_s=ledger.wall_cap_s, wall_seconds=wall_seconds)
