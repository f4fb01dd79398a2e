"""The budget ledger of one run, in Redis.

Scopes are paths: ``run``, ``run/<stage>``, ``run/<stage>/<agent>``. Before a call, ``reserve``
holds its worst case in every enclosing scope at once (one Lua script, so concurrent agents can never
overshoot a cap together); after the call, a commit op (applied inside the step's commit script)
releases the hold and records the actual usage. Holds left by a crashed worker are released when
another worker claims the run, or when they expire.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from conclave.budgets.pricing import PICO, from_pico, to_pico
from conclave.controller.scripts import Scripts
from conclave.schema import Budget, Cost, CostLine, LimitStatus, SubBudget, Usage

__all__ = [
    "BudgetExhausted",
    "Ledger",
    "LedgerSnapshot",
    "Refusal",
    "compute_caps",
    "limit_label",
]

ROOT = "run"
#: Metrics recorded in breakdowns (``by|<dim>|<name>|<metric>``).
METRICS = ("input_tokens", "output_tokens", "cached_tokens", "model_calls", "tool:<name>", "usd", "ms")


class BudgetExhausted(RuntimeError):
    """A limit has no room left for the next call. ``limit`` names it (``usd``, ``output_tokens``,
    ``tool:search``…) and ``scope`` the scope whose cap binds."""

    def __init__(self, scope: str, limit: str, room: int = 0) -> None:
        self.scope, self.limit, self.room = scope, limit, room
        where = "" if scope == ROOT else f" of scope {scope!r}"
        super().__init__(f"budget exhausted: {limit_label(limit)}{where} has no room left")


def limit_label(limit: str) -> str:
    if limit.startswith("tool:"):
        name = limit[5:]
        return "tool_calls" if name == "*" else f"tool_calls.{name}"
    return limit


@dataclass(frozen=True)
class Refusal:
    scope: str
    limit: str
    room: int


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


def enclosing(scope: str) -> list[str]:
    """``run/a/b`` → ``[run, run/a, run/a/b]``."""
    parts = scope.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


@dataclass
class LedgerSnapshot:
    caps: dict[tuple[str, str], int]
    used: dict[tuple[str, str], int]
    reserved: dict[tuple[str, str], int]
    by: dict[tuple[str, str, str], int]

    def left(self, scope: str, limit: str) -> int | None:
        cap = self.caps.get((scope, limit))
        if cap is None:
            return None
        return cap - self.used.get((scope, limit), 0) - self.reserved.get((scope, limit), 0)


class Ledger:
    """The ledger of one run, as seen by the worker that owns it (``owner`` is its lease token)."""

    def __init__(self, redis: Redis, scripts: Scripts, prefix: str, rid: str, owner: str = "") -> None:
        self.r: Any = redis  # see RunStore: redis-py's async result types are unions
        self.scripts = scripts
        self.p = prefix
        self.rid = rid
        self.owner = owner
        self.has_caps = False
        self.wall_cap_s: float | None = None

    @property
    def key(self) -> str:
        return f"{self.p}:run:{self.rid}:ledger"

    async def set_caps(self, budget: Budget | None) -> None:
        caps = compute_caps(budget)
        self.has_caps = bool(caps)
        self.wall_cap_s = budget.wall_seconds if budget else None
        await self.scripts.set_caps(
            args=[self.p, self.rid, self.owner, json.dumps({k: str(v) for k, v in caps.items()})]
        )

    async def reserve(
        self, scope: str, amounts: Mapping[str, int], *, ttl_s: float = 900.0
    ) -> tuple[str | None, Refusal | None]:
        """Hold ``amounts`` in ``scope`` and every scope enclosing it. Returns (reservation id, None)
        or (None, refusal naming the binding scope, limit and the room left there)."""
        if not self.has_caps:
            return None, None
        res_id = f"r{secrets.token_hex(8)}"
        res = await self.scripts.reserve(
            args=[
                self.p,
                self.rid,
                self.owner,
                f"{time.time():.6f}",
                res_id,
                ttl_s,
                json.dumps(enclosing(scope)),
                json.dumps({k: str(int(v)) for k, v in amounts.items()}),
            ]
        )
        if int(res[0]) == 1:
            return res_id, None
        return None, Refusal(scope=str(res[1]), limit=str(res[2]), room=int(res[3]))

    @staticmethod
    def commit_op(
        res_id: str | None, scope: str, used: Mapping[str, int], by: Mapping[str, int] | None = None
    ) -> dict[str, Any]:
        """A ledger change to apply in a step's commit script."""
        return {
            "res": res_id or "",
            "scopes": enclosing(scope),
            "used": {k: str(int(v)) for k, v in used.items() if v},
            "by": {k: str(int(v)) for k, v in (by or {}).items() if v},
        }

    async def snapshot(self) -> LedgerSnapshot:
        raw = await self.r.hgetall(self.key)
        caps: dict[tuple[str, str], int] = {}
        used: dict[tuple[str, str], int] = {}
        reserved: dict[tuple[str, str], int] = {}
        by: dict[tuple[str, str, str], int] = {}
        for field, value in raw.items():
            kind, _, rest = field.partition("|")
            if kind == "by":
                dim, name_metric = rest.split("|", 1)
                name, _, metric = name_metric.rpartition("|")
                by[(dim, name, metric)] = int(value)
                continue
            scope, _, limit = rest.rpartition("|")
            target = {"cap": caps, "used": used, "resv": reserved}.get(kind)
            if target is not None:
                target[(scope, limit)] = int(value)
        return LedgerSnapshot(caps, used, reserved, by)

    async def cost(self, *, wall_seconds: float | None = None) -> Cost:
        return cost_from_snapshot(await self.snapshot(), wall_cap_s=self.wall_cap_s, wall_seconds=wall_seconds)


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
