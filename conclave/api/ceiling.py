"""Per-request ceilings for ensembles called on the OpenAI endpoint (``model="ensemble/<name>"``).

One such request fans out into many model calls, so it must not be an open tap. Before it runs,
``worst_case`` computes what it may spend from the config's static call plan
(``conclave.agents.ensemble.config.plan``) with the request's ``max_tokens`` capping every call, plus
the re-asks a judge makes when its output does not parse. A worst case above the deployment's
ceiling (``Settings.ensemble_ceiling``) is refused before any call, naming the numbers.

A request that fits runs against a ``CallLedger`` (``conclave.controller.calls``) whose own caps are that
worst case, so every inner call is reserved against it — and against the caller's tenant and key budgets
— before it is made and committed after, exactly as a run's calls are. Nothing can spend past the
ceiling, whatever the ensemble does at run time.
"""

from __future__ import annotations

from dataclasses import dataclass

from conclave.agents.ensemble.config import ComponentSpec, EnsembleConfig, plan
from conclave.config import EnsembleCeiling

#: The root scope of a ledger (a request's calls are all in it or below it).
ROOT = "run"

__all__ = ["EnsembleCeiling", "WorstCase", "worst_case"]


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
