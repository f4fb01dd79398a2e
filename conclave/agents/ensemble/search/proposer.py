"""Which architecture to evaluate next: uniform draws, then Bayesian optimisation with a Gaussian process.

The first ``n_random`` candidates are drawn uniformly among the points not yet tried. After them
(``method="bayes"``) a Gaussian process is fitted to the objective of the candidates tried so far,
``quality - cost_weight * cost / max cost seen``, with a constant mean (the mean objective), a
signal variance ``s2`` (their sample variance, at least 0.05) and observation noise ``0.25 / dev
size`` (the largest variance of a mean of that many scores in [0, 1]). Its kernel is
``s2 * exp(-distance / LENGTH)``, where the distance between two architectures sums, per dimension,
1 for different categorical values and the difference of positions (scaled to 0..1) for ordered
ones: a product of per-dimension kernels, so it can learn interactions (a verifier helps only with
several samples). The proposal is the untried point with the highest expected improvement over the
best objective so far, among all untried points when the space has at most 4096, else among 2048
drawn; ties go to a seeded random one. ``method="random"`` draws uniformly throughout.

Seeded: the same seed, dev set and space propose the same candidates, so a resumed run replays
exactly. The linear algebra is numpy's (Cholesky factor, triangular solves); it proposes what the
pure-Python version before it did (tests/unit/test_ensemble_search_proposer.py compares them).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..components import stable_seed
from .results import CandidateResult, Method, cost_of
from .space import ORDERED, Arch, SearchSpace, combinations

__all__ = ["Proposer", "expected_improvement"]

Floats = NDArray[np.float64]

#: Draws of a uniform proposal before falling back to listing every untried point.
_UNIFORM_TRIES = 200
#: Spaces up to this size are searched exhaustively by the Bayesian step; larger ones by sampling.
_EXHAUSTIVE = 4096
_SAMPLED = 2048
#: Two expected improvements closer than this (relative) are a tie, resolved by pool order.
_TIE = 1e-12


def expected_improvement(mu: Floats, sd: Floats, best: float) -> Floats:
    """E[max(f - best, 0)] for f ~ N(mu, sd²), elementwise."""
    z = (mu - best) / sd
    cdf = 0.5 * (1.0 + np.array([math.erf(v / math.sqrt(2.0)) for v in z], dtype=np.float64))
    pdf = np.exp(-z * z / 2.0) / math.sqrt(2.0 * math.pi)
    out: Floats = (mu - best) * cdf + sd * pdf
    return out


class Proposer:
    """Seeded proposals over one space (see the module)."""

    LENGTH = 2.0

    def __init__(
        self, space: SearchSpace, seed: int, method: Method, n_random: int, cost_weight: float, dev_size: int
    ) -> None:
        self.space = space
        self.noise = 0.25 / dev_size  # the variance of a mean of dev_size scores in [0, 1], at most
        self.choices = space.choices()
        self.rng = random.Random(stable_seed("ensemble-search", seed))
        self.method = method
        self.n_random = max(1, n_random)
        self.cost_weight = cost_weight
        self.size = math.prod(len(v) for v in self.choices.values())
        self._pos = {d: {repr(v): k for k, v in enumerate(vs)} for d, vs in self.choices.items()}
        self._all: list[tuple[str, Arch]] | None = None

    # -- drawing points ---------------------------------------------------------------------------
    def _arch(self, pick: Mapping[str, Any]) -> Arch:
        return Arch(**pick).canonical(self.space)

    def _uniform(self, tried: set[str]) -> Arch | None:
        for _ in range(_UNIFORM_TRIES):
            a = self._arch({d: self.rng.choice(v) for d, v in self.choices.items()})
            if a.key() not in tried:
                return a
        left = self._untried(tried)
        return self.rng.choice(left) if left else None

    def _points(self) -> list[tuple[str, Arch]]:
        """Every distinct point of the space once, canonical, in ``combinations`` order (built once)."""
        if self._all is None:
            seen: dict[str, Arch] = {}
            for combo in combinations(self.choices):
                a = self._arch(combo)
                seen.setdefault(a.key(), a)
            self._all = list(seen.items())
        return self._all

    def _untried(self, tried: set[str]) -> list[Arch]:
        return [a for key, a in self._points() if key not in tried]

    def _pool(self, tried: set[str]) -> list[Arch]:
        if self.size <= _EXHAUSTIVE:
            return self._untried(tried)
        pool: list[Arch] = []
        keys = set(tried)
        for _ in range(_SAMPLED):
            a = self._uniform(keys)
            if a is None:
                break
            keys.add(a.key())
            pool.append(a)
        return pool

    # -- the kernel -------------------------------------------------------------------------------
    def _encode(self, archs: Sequence[Arch]) -> tuple[Floats, Floats]:
        """Each architecture as (ordered positions scaled to 0..1, categorical value codes)."""
        ordered = [d for d, vs in self.choices.items() if d in ORDERED and len(vs) > 1]
        categorical = [d for d in self.choices if d not in ordered]
        codes: dict[str, dict[str, int]] = {d: dict(self._pos[d]) for d in categorical}
        pos = np.array(
            [[self._pos[d].get(repr(getattr(a, d)), 0) / (len(self.choices[d]) - 1) for d in ordered] for a in archs],
            dtype=np.float64,
        ).reshape(len(archs), len(ordered))
        cat = np.array(
            [[codes[d].setdefault(repr(getattr(a, d)), len(codes[d])) for d in categorical] for a in archs],
            dtype=np.float64,
        ).reshape(len(archs), len(categorical))
        return pos, cat

    def distances(self, a: Sequence[Arch], b: Sequence[Arch]) -> Floats:
        """Pairwise distances between the architectures of ``a`` (rows) and ``b`` (columns)."""
        pos, cat = self._encode([*a, *b])
        n = len(a)
        d: Floats = np.abs(pos[:n, None, :] - pos[None, n:, :]).sum(axis=2)
        d += (cat[:n, None, :] != cat[None, n:, :]).sum(axis=2)
        return d

    # -- proposing --------------------------------------------------------------------------------
    def propose(self, done: Sequence[CandidateResult], metric: str) -> tuple[Arch | None, Method]:
        """The next architecture to evaluate (None when every point was tried) and how it was chosen."""
        tried = {c.arch.key() for c in done}
        if self.method == "random" or len(done) < self.n_random:
            return self._uniform(tried), "random"
        pool = self._pool(tried)
        if not pool:
            return None, "bayes"
        self.rng.shuffle(pool)  # ties in expected improvement go to a seeded random one
        max_cost = max((cost_of(c.spend, metric) for c in done), default=0.0) or 1.0
        ys = np.array([c.quality - self.cost_weight * cost_of(c.spend, metric) / max_cost for c in done])
        mean = float(ys.mean())
        s2 = max(float(((ys - mean) ** 2).sum()) / max(1, len(ys) - 1), 0.05)
        xs = [c.arch for c in done]
        gram = s2 * np.exp(-self.distances(xs, xs) / self.LENGTH) + self.noise * np.eye(len(xs))
        low = np.linalg.cholesky(gram)
        alpha = np.linalg.solve(low.T, np.linalg.solve(low, ys - mean))
        ks = s2 * np.exp(-self.distances(xs, pool) / self.LENGTH)  # one column per pool point
        mu = mean + ks.T @ alpha
        v = np.linalg.solve(low, ks)
        sd = np.sqrt(np.maximum(s2 - (v * v).sum(axis=0), 1e-12))
        ei = expected_improvement(mu, sd, float(ys.max()))
        top = float(ei.max())
        first = int(np.flatnonzero(ei >= top - _TIE * max(1.0, abs(top)))[0])
        return pool[first], "bayes"
