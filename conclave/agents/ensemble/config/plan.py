"""The static plan of an ensemble: model calls, requests and critical-path rounds, before running it.

The figures are upper bounds (every parse succeeds, every candidate passes verifiers and voters, the
unit-test generator writes its cap): what ``conclave ensemble validate`` reports, and what the
executor checks against the ledger before a layer to shrink its samples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .spec import CALL_FREE, EnsembleConfig

__all__ = ["MAX_N", "LayerPlan", "Plan", "plan"]


@dataclass
class LayerPlan:
    """What one layer will do, with candidate counts as upper bounds (verifiers may keep fewer)."""

    completions: int  # completions drawn (Archon issues each as one call)
    requests: int  # requests Conclave sends (samples of one prompt batched with ``n``)
    rounds: int  # calls one after another on the layer's critical path
    candidates_out: int
    output_tokens: int = 0  # worst case: every call writes max_tokens


@dataclass
class Plan:
    layers: list[LayerPlan] = field(default_factory=list)

    @property
    def total_model_calls(self) -> int:
        return sum(lp.completions for lp in self.layers)

    @property
    def total_requests(self) -> int:
        return sum(lp.requests for lp in self.layers)

    @property
    def output_tokens(self) -> int:
        return sum(lp.output_tokens for lp in self.layers)

    @property
    def critical_path_rounds(self) -> int:
        return sum(lp.rounds for lp in self.layers)


#: Most samples one request carries (the OpenAI ``n`` limit of ``ChatRequest``).
MAX_N = 128


def _batches(samples: int) -> int:
    return -(-samples // MAX_N)


def plan(
    cfg: EnsembleConfig,
    *,
    samples: Mapping[int, Sequence[int]] | None = None,
    start: int = 0,
    n_cand: int = 0,
    cap: int | None = None,
) -> Plan:
    """The calls a config makes when every parse succeeds, every candidate passes the verifier and
    the voter, and the unit-test generator writes ``unit_test_cap`` tests (so candidate counts and
    calls are upper bounds, retries aside). ``samples`` overrides per-component samples of the layers
    it names; ``start`` and ``n_cand`` plan the rest of a run from a layer on; ``cap`` caps every
    call's ``max_tokens`` (for ``output_tokens``, the worst case)."""
    out = Plan()
    for i in range(start, len(cfg.layers)):
        layer = cfg.layers[i]
        completions = requests = rounds = tokens = 0
        produced: list[int] = []
        batched: dict[tuple[str, float, int, bool], int] = {}
        for j, c in enumerate(layer.components):
            s = samples[i][j] if samples is not None and i in samples else c.samples
            mt = min(c.max_tokens, cap) if cap else c.max_tokens
            calls = 0
            if c.type == "generator":
                calls = s
                if c.first_finish:
                    requests += s
                    produced.append(1)
                else:
                    key = (c.model or "", c.temperature, c.max_tokens, c.no_system)
                    batched[key] = batched.get(key, 0) + s
                    produced.append(s)
                rounds = max(rounds, 1)
            elif c.type == "unit_test_generator":
                calls = 1
                requests += 1
                rounds = max(rounds, 1)
            elif not n_cand:
                continue  # a judge with nothing to judge makes no call
            elif c.type == "fuser":
                calls = s
                requests += _batches(s)
                produced.append(s)
                rounds = max(rounds, 1)
            elif c.type == "critic":
                calls = 1
                requests += 1
                rounds = max(rounds, 1)
            elif c.type == "ranker":
                calls = 1 if n_cand > 1 else 0
                requests += calls
                produced.append(min(c.top_k or n_cand, n_cand))
                rounds = max(rounds, calls)
            elif c.type == "verifier":
                calls = 2 * n_cand
                requests += calls
                produced.append(min(c.first_k or n_cand, n_cand))
                rounds = max(rounds, 2)
            elif c.type == "unit_test_evaluator":
                calls = n_cand
                requests += calls
                produced.append(min(c.first_k or c.top_k or n_cand, n_cand))
                rounds = max(rounds, 1)
            elif c.type in CALL_FREE:
                produced.append(n_cand)
            completions += calls
            tokens += calls * mt
        requests += sum(_batches(s) for s in batched.values())
        if produced:
            n_cand = sum(produced)
        out.layers.append(LayerPlan(completions, requests, rounds, n_cand, tokens))
    return out
