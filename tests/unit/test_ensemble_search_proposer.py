"""The numpy Gaussian process proposes exactly what the pure-Python one it replaced proposed.

``_Reference`` below is the proposer as it stood before numpy (hand-written Cholesky factor and
triangular solves), kept verbatim as the oracle. Both are driven through the same sequence of
evaluated candidates — synthetic qualities quantised like dev-set means (so ties happen), priced
spends — and must propose the same architecture, chosen the same way, at every step.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from conclave.agents.ensemble.components import stable_seed
from conclave.agents.ensemble.search import Arch, CandidateResult, Proposer, SearchSpace, cost_of
from conclave.agents.ensemble.search.space import ORDERED, combinations
from conclave.schema import Usage


def _cholesky(a: list[list[float]]) -> list[list[float]]:
    n = len(a)
    low = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1):
            acc = a[i][j] - sum(low[i][k] * low[j][k] for k in range(j))
            if i == j:
                low[i][i] = math.sqrt(max(acc, 1e-12))
            else:
                low[i][j] = acc / low[j][j]
    return low


def _solve_lower(low: list[list[float]], b: list[float]) -> list[float]:
    x: list[float] = []
    for i, row in enumerate(low):
        x.append((b[i] - sum(row[k] * x[k] for k in range(i))) / row[i])
    return x


def _solve_upper_t(low: list[list[float]], b: list[float]) -> list[float]:
    n = len(low)
    x = [0.0] * n
    for i in reversed(range(n)):
        x[i] = (b[i] - sum(low[k][i] * x[k] for k in range(i + 1, n))) / low[i][i]
    return x


class _Reference:
    """The pure-Python proposer (conclave/agents/ensemble/search.py before numpy), verbatim."""

    LENGTH = 2.0

    def __init__(
        self, space: SearchSpace, seed: int, method: str, n_random: int, cost_weight: float, dev_size: int
    ) -> None:
        self.space = space
        self.noise = 0.25 / dev_size
        self.choices = space.choices()
        self.rng = random.Random(stable_seed("ensemble-search", seed))
        self.method = method
        self.n_random = max(1, n_random)
        self.cost_weight = cost_weight
        self.size = math.prod(len(v) for v in self.choices.values())
        self._pos = {d: {repr(v): k for k, v in enumerate(vs)} for d, vs in self.choices.items()}

    def _arch(self, pick: Mapping[str, Any]) -> Arch:
        return Arch(**pick).canonical(self.space)

    def _uniform(self, tried: set[str]) -> Arch | None:
        for _ in range(200):
            a = self._arch({d: self.rng.choice(v) for d, v in self.choices.items()})
            if a.key() not in tried:
                return a
        left = self._untried(tried)
        return self.rng.choice(left) if left else None

    def _untried(self, tried: set[str]) -> list[Arch]:
        left: list[Arch] = []
        seen = set(tried)
        for combo in combinations(self.choices):
            a = self._arch(combo)
            if a.key() not in seen:
                seen.add(a.key())
                left.append(a)
        return left

    def _distance(self, a: Arch, b: Arch) -> float:
        d = 0.0
        for dim, values in self.choices.items():
            va, vb = getattr(a, dim), getattr(b, dim)
            if va == vb:
                continue
            if dim in ORDERED and len(values) > 1:
                pa, pb = self._pos[dim].get(repr(va), 0), self._pos[dim].get(repr(vb), 0)
                d += abs(pa - pb) / (len(values) - 1)
            else:
                d += 1.0
        return d

    def propose(self, done: Sequence[CandidateResult], metric: str) -> tuple[Arch | None, str]:
        tried = {c.arch.key() for c in done}
        if self.method == "random" or len(done) < self.n_random:
            return self._uniform(tried), "random"
        if self.size <= 4096:
            pool = self._untried(tried)
        else:
            pool, keys = [], set(tried)
            for _ in range(2048):
                a = self._uniform(keys)
                if a is None:
                    break
                keys.add(a.key())
                pool.append(a)
        if not pool:
            return None, "bayes"
        self.rng.shuffle(pool)
        max_cost = max((cost_of(c.spend, metric) for c in done), default=0.0) or 1.0
        ys = [c.quality - self.cost_weight * cost_of(c.spend, metric) / max_cost for c in done]
        mean = sum(ys) / len(ys)
        s2 = max(sum((y - mean) ** 2 for y in ys) / max(1, len(ys) - 1), 0.05)
        xs = [c.arch for c in done]
        gram = [
            [
                s2 * math.exp(-self._distance(a, b) / self.LENGTH) + (self.noise if i == j else 0.0)
                for j, b in enumerate(xs)
            ]
            for i, a in enumerate(xs)
        ]
        low = _cholesky(gram)
        alpha = _solve_upper_t(low, _solve_lower(low, [y - mean for y in ys]))
        best_y = max(ys)
        best_ei, choice = -1.0, pool[0]
        for a in pool:
            ks = [s2 * math.exp(-self._distance(a, b) / self.LENGTH) for b in xs]
            mu = mean + sum(k * w for k, w in zip(ks, alpha, strict=True))
            v = _solve_lower(low, ks)
            sd = math.sqrt(max(s2 - sum(t * t for t in v), 1e-12))
            z = (mu - best_y) / sd
            ei = (mu - best_y) * 0.5 * (1 + math.erf(z / math.sqrt(2))) + sd * math.exp(-z * z / 2) / math.sqrt(
                2 * math.pi
            )
            if ei > best_ei:
                best_ei, choice = ei, a
        return choice, "bayes"


def _evaluated(i: int, arch: Arch, how: str, dev_size: int) -> CandidateResult:
    """A made-up evaluation: more samples help only with a verifier, a critic costs; the quality is a
    mean of ``dev_size`` scores (so equal qualities are common), the spend priced per call."""
    rng = random.Random(stable_seed("quality", arch.key()))
    p = 0.3 + (0.08 * math.log2(arch.samples) if arch.verifier else 0.0) - (0.05 if arch.critic else 0.0)
    right = sum(rng.random() < p for _ in range(dev_size))
    calls = arch.samples + 2 * arch.samples * arch.verifier + arch.blocks * (arch.critic + bool(arch.ranker_top_k))
    spend = Usage(input_tokens=40 * calls, output_tokens=16 * calls, model_calls=calls, usd_pico=calls * 7_000_000)
    return CandidateResult(
        index=i,
        method=how,  # type: ignore[arg-type]
        arch=arch,
        label=arch.label(),
        quality=right / dev_size,
        scores=[],
        spend=spend,
    )


SMALL = SearchSpace(generators=["g"], judges=["j"], ranker_top_k=[None, 1], blocks=[1])
DEFAULT = SearchSpace(generators=["a", "b"], judges=["j", "k"])
LARGE = SearchSpace(  # 9216 points: the Bayesian step samples its pool instead of listing every point
    generators=["a", "b", "c", "d"],
    judges=["j", "k", "l", "m"],
    samples=[1, 2, 3, 4, 6, 8, 12, 16],
    blocks=[1, 2, 3],
)


@pytest.mark.parametrize(
    ("space", "seed", "cost_weight", "metric", "steps"),
    [
        (SMALL, 7, 0.0, "usd", 24),
        (SMALL, 3, 0.5, "model_calls", 24),
        (DEFAULT, 0, 0.0, "usd", 20),
        (DEFAULT, 11, 1.0, "tokens", 20),
        (LARGE, 5, 0.25, "usd", 12),
    ],
)
def test_numpy_gp_proposes_what_the_pure_python_gp_did(
    space: SearchSpace, seed: int, cost_weight: float, metric: str, steps: int
) -> None:
    dev_size = 16
    new = Proposer(space, seed, "bayes", 5, cost_weight, dev_size)
    old = _Reference(space, seed, "bayes", 5, cost_weight, dev_size)
    done: list[CandidateResult] = []
    for i in range(steps):
        got, how = new.propose(done, metric)
        want, want_how = old.propose(done, metric)
        assert (got, how) == (want, want_how), f"step {i}"
        if got is None:
            break
        done.append(_evaluated(i, got, how, dev_size))
    assert [c.method for c in done].count("bayes") >= min(steps, len(done)) - 5


def test_proposals_are_seeded_and_never_repeat_a_point() -> None:
    def run(seed: int) -> list[str]:
        proposer, done = Proposer(SMALL, seed, "bayes", 3, 0.0, 8), []
        while (got := proposer.propose(done, "usd"))[0] is not None:
            arch, how = got
            assert arch is not None
            done.append(_evaluated(len(done), arch, how, 8))
        return [c.arch.key() for c in done]

    first = run(1)
    assert first == run(1) and first != run(2)
    assert len(first) == len(set(first)) == 64  # every point of SMALL once, then the space is exhausted
