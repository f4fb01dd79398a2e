"""Per-request ceilings for ensembles called on the OpenAI endpoint (``model="ensemble/<name>"``).

One such request fans out into many model calls, so it must not be an open tap. Before it runs,
``worst_case`` computes what it may spend from the config's static call plan
(``conclave.agents.ensemble.config.plan``) with the request's ``max_tokens`` capping every call, plus
the re-asks a judge makes when its output does not parse. A worst case above the deployment's
ceiling (``Settings.ensemble_ceiling``) is refused before any call, naming the numbers.

A request that fits runs against a ``RequestLedger``: an in-memory ledger whose caps are that worst
case, so every inner call is reserved against it before it is made and committed after, exactly as
a run's calls are against the Redis ledger. Nothing can spend past the ceiling, whatever the
ensemble does at run time. The ledger lives for one request and belongs to no run; the tenant it is
made for is known (``tenant``), so charging the tenant's own ledger is one more scope away.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from conclave.agents.ensemble.config import ComponentSpec, EnsembleConfig, plan
from conclave.config import EnsembleCeiling
from conclave.core.ledger import HOLD_TTL_S, RunLedger, enclosing
from conclave.core.pending import LedgerOp
from conclave.core.store import LedgerSnapshot, Refusal

#: The root scope of a ledger (a request's calls are all in it or below it).
ROOT = "run"

__all__ = ["EnsembleCeiling", "RequestLedger", "WorstCase", "worst_case"]


@dataclass(frozen=True)
class WorstCase:
    """What one ensemble request may spend at most: model requests and output tokens."""

    model_calls: int
    output_tokens: int

    def exceeds(self, ceiling: EnsembleCeiling) -> bool:
        return self.model_calls > ceiling.model_calls or self.output_tokens > ceiling.output_tokens

    def caps(self) -> dict[str, int]:
        return {"model_calls": self.model_calls, "output_tokens": self.output_tokens}


def _judged_calls(c: ComponentSpec, n_cand: int) -> int:
    """Calls of a component whose output is parsed, so that each may be re-asked: the critic, a
    ranker with something to rank, a verifier's verdicts, the unit-test generator, the evaluator."""
    if c.type == "unit_test_generator":
        return 1
    if not n_cand:
        return 0
    if c.type == "critic":
        return 1
    if c.type == "ranker":
        return 1 if n_cand > 1 else 0
    if c.type in ("verifier", "unit_test_evaluator"):
        return n_cand
    return 0


def worst_case(config: EnsembleConfig, max_tokens: int | None, retries: int) -> WorstCase:
    """The plan's requests and output tokens with ``max_tokens`` capping every call, plus up to
    ``retries`` re-asks (or the component's own ``max_parse_retries``) of every judged call."""
    p = plan(config, cap=max_tokens)
    calls, tokens = p.total_requests, p.output_tokens
    n_cand = 0
    for layer, lp in zip(config.layers, p.layers, strict=True):
        for c in layer.components:
            again = _judged_calls(c, n_cand) * (retries if c.max_parse_retries is None else c.max_parse_retries)
            calls += again
            tokens += again * (min(c.max_tokens, max_tokens) if max_tokens else c.max_tokens)
        n_cand = lp.candidates_out
    return WorstCase(model_calls=calls, output_tokens=tokens)


class RequestLedger(RunLedger):
    """A ledger in memory for one request: ``reserve`` holds a call's worst case against the caps
    (in the scope and every enclosing one, as the Redis ledger does) and ``ledger_op`` (it is also
    the meter's commit sink) releases the hold and records the actual usage. One event loop, no
    await between the check and the hold: concurrent calls of one request cannot overshoot."""

    def __init__(self, caps: Mapping[str, int], *, tenant: str) -> None:
        # No store: every method of RunLedger that would use one is overridden.
        super().__init__(None, f"request-{secrets.token_hex(6)}", tenant)  # type: ignore[arg-type]
        self.tenant = tenant
        self.has_caps = bool(caps)
        self.wall_cap_s = None
        self._caps = {(ROOT, limit): int(v) for limit, v in caps.items()}
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
        if not held:
            return None, None
        res_id = f"r{secrets.token_hex(8)}"
        for key, amount in held.items():
            self._reserved[key] = self._reserved.get(key, 0) + amount
        self._holds[res_id] = held
        return res_id, None

    async def ledger_op(self, op: LedgerOp) -> None:
        """Apply a commit op (``RunLedger.commit_op``): release its hold, add its usage everywhere."""
        for key, amount in self._holds.pop(op.res or "", {}).items():
            self._reserved[key] -= amount
        for scope in op.scopes:
            for limit, amount in op.used.items():
                self._used[(scope, limit)] = self._used.get((scope, limit), 0) + int(amount)
        for field, amount in op.by.items():
            dim, name_metric = field.split("|", 1)
            name, _, metric = name_metric.rpartition("|")
            self._by[(dim, name, metric)] = self._by.get((dim, name, metric), 0) + int(amount)

    async def set_caps(self, caps: Mapping[str, int], *, wall_cap_s: float | None = None) -> None:
        raise TypeError("a RequestLedger's caps are fixed when it is made")

    async def snapshot(self) -> LedgerSnapshot:
        return LedgerSnapshot(
            caps=dict(self._caps), used=dict(self._used), reserved=dict(self._reserved), by=dict(self._by)
        )

    @property
    def open_holds(self) -> int:
        """Reservations not yet committed (0 once a request has finished)."""
        return len(self._holds)
