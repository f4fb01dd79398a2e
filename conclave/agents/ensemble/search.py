"""Architecture search (Archon's ITAS): find a good ensemble for a task from a small dev set.

The search space is a set of layer choices (``SearchSpace``): the generator model and its number of
samples, whether to add a critic, a ranker keeping the top k, a fuser, a verifier, how many
critic/ranker/fuser blocks to stack, and the judge model. A point (``Arch``) becomes an ordinary
ensemble config (``Arch.config()``)::

    [generator × samples] → ( [critic] → [ranker top_k] → [fuser] ) × blocks → [verifier]

Intermediate fusers write ``samples`` candidates, the last one writes one. Each candidate is run on
every dev example through the ensemble executor, so every call is metered by the ledger (scope
``<meter scope>/search/c<i>``), and its answers are scored: exact match with ``expected``, a
Python checker, or an LLM judge (a metered call per answer). Quality is the mean score; cost is
what the ledger committed for the candidate (judge calls included), in USD, tokens, output tokens
or model calls (``cost_metric``; ``auto`` = USD when any model is priced, else tokens).

Search: the first ``n_random`` candidates are drawn uniformly among the points not yet tried; then
(``method="bayes"``) each choice value of each dimension has a Gaussian posterior over the
objective (``quality - cost_weight * cost / max cost seen``) of the candidates that used it (prior:
the mean of all, weight one; noise: their variance, at least ``0.25 / dev size``, the largest
sampling variance of a mean score), and Thompson sampling picks, per dimension,
the value with the highest draw. A proposal already tried is redrawn; after 50 draws, a random
untried point is taken. ``method="random"`` draws uniformly throughout. Seeded: the same seed, dev
set and space propose the same candidates, so a resumed run replays exactly.

Inside a run (kind ``ensemble_search``) each candidate evaluation is one durable step
``search/cand/<i>``: a resumed run replays the candidates it committed and evaluates only the rest.
The search stops after ``max_candidates``, when the space is exhausted, or when the budget refuses a
call (``BudgetExhausted``): then the candidate being evaluated is discarded (its calls count) and
the report gives the best so far and the Pareto front of quality against cost. A candidate whose
samples the executor had to shrink to fit the budget is discarded the same way, since it was not
the architecture asked for. Best = highest quality, then lowest cost, then first evaluated.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from conclave.core.context import Emitter, Metered, RunContext
from conclave.core.kinds import Outcome, RunKind
from conclave.core.ledger import BudgetExhausted
from conclave.schema import RunStatus, StopReason, TaskSpec
from conclave.schema.chat import ChatMessage, ChatRequest

from . import parsing, prompts
from .components import stable_seed
from .config import ComponentSpec, EnsembleConfig, LayerSpec
from .coverage import StepFn
from .executor import EnsembleError, EnsembleResult, Executor, ModelResolver
from .scoring import Checker, CheckerError, Problem, Spend, make_checker, recording, run_checker

__all__ = [
    "KIND",
    "Arch",
    "CandidateResult",
    "ScorerSpec",
    "SearchOptions",
    "SearchReport",
    "SearchSpace",
    "architecture_search",
    "pareto_front",
]

log = logging.getLogger(__name__)

CostMetric = Literal["auto", "usd", "tokens", "output_tokens", "model_calls"]
DIMENSIONS = ("generator", "samples", "critic", "ranker_top_k", "fuser", "verifier", "blocks", "judge")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _distinct(values: Sequence[Any], name: str) -> None:
    if len(set(map(repr, values))) != len(values):
        raise ValueError(f"{name}: choices must be distinct")


class SearchSpace(_Strict):
    """The layer choices the search may combine (each list: the values a dimension may take)."""

    generators: list[str] = Field(min_length=1, description="Models that may generate.")
    judges: list[str] | None = Field(
        default=None, min_length=1, description="Models for critic, ranker, fuser, verifier; default: generators."
    )
    samples: list[int] = Field(default_factory=lambda: [1, 2, 4, 8], min_length=1)
    critic: list[bool] = Field(default_factory=lambda: [False, True], min_length=1)
    ranker_top_k: list[int | None] = Field(
        default_factory=lambda: [None, 1, 3], min_length=1, description="None = no ranker."
    )
    fuser: list[bool] = Field(default_factory=lambda: [False, True], min_length=1)
    verifier: list[bool] = Field(default_factory=lambda: [False, True], min_length=1)
    blocks: list[int] = Field(
        default_factory=lambda: [1, 2], min_length=1, description="Critic/ranker/fuser blocks stacked."
    )
    temperature: float = Field(default=0.7, ge=0, le=2, description="Generators' temperature.")
    max_tokens: int = Field(default=512, ge=1, le=100_000, description="Generators' and fusers' max_tokens.")
    judge_max_tokens: int = Field(default=512, ge=1, le=100_000, description="Critic/ranker/verifier max_tokens.")

    @field_validator("samples")
    @classmethod
    def _samples(cls, v: list[int]) -> list[int]:
        for s in v:
            if not 1 <= s <= 128:
                raise ValueError(f"samples must be between 1 and 128, got {s}")
        _distinct(v, "samples")
        return v

    @field_validator("ranker_top_k")
    @classmethod
    def _top_k(cls, v: list[int | None]) -> list[int | None]:
        for k in v:
            if k is not None and k < 1:
                raise ValueError(f"ranker_top_k must be None or at least 1, got {k}")
        _distinct(v, "ranker_top_k")
        return v

    @field_validator("blocks")
    @classmethod
    def _blocks(cls, v: list[int]) -> list[int]:
        for b in v:
            if not 1 <= b <= 8:
                raise ValueError(f"blocks must be between 1 and 8, got {b}")
        _distinct(v, "blocks")
        return v

    @model_validator(mode="after")
    def _distinct_choices(self) -> SearchSpace:
        for name in ("generators", "judges", "critic", "fuser", "verifier"):
            value = getattr(self, name)
            if value is not None:
                _distinct(value, name)
        return self

    def choices(self) -> dict[str, list[Any]]:
        return {
            "generator": list(self.generators),
            "samples": list(self.samples),
            "critic": list(self.critic),
            "ranker_top_k": list(self.ranker_top_k),
            "fuser": list(self.fuser),
            "verifier": list(self.verifier),
            "blocks": list(self.blocks),
            "judge": list(self.judges or self.generators),
        }


class Arch(_Strict):
    """One point of the search space."""

    generator: str
    samples: int
    critic: bool = False
    ranker_top_k: int | None = None
    fuser: bool = False
    verifier: bool = False
    blocks: int = 1
    judge: str

    def canonical(self, space: SearchSpace) -> Arch:
        """The same ensemble written one way: without a critic, ranker or fuser, blocks is the first
        choice; without any judging component, judge is the first judge."""
        upd: dict[str, Any] = {}
        if not (self.critic or self.ranker_top_k or self.fuser):
            upd["blocks"] = space.blocks[0]
            if not self.verifier:
                upd["judge"] = (space.judges or space.generators)[0]
        return self.model_copy(update=upd)

    def key(self) -> str:
        return json.dumps(self.model_dump(), sort_keys=True)

    def label(self) -> str:
        parts = [f"{self.samples}x{self.generator}"]
        block = [
            *(["critic"] if self.critic else []),
            *([f"rank{self.ranker_top_k}"] if self.ranker_top_k else []),
            *(["fuse"] if self.fuser else []),
        ]
        if block:
            parts.append(("(" + ">".join(block) + f")x{self.blocks}") if self.blocks > 1 else ">".join(block))
        if self.verifier:
            parts.append("verify")
        judged = self.critic or self.ranker_top_k or self.fuser or self.verifier
        return " > ".join(parts) + (f" [judge {self.judge}]" if judged else "")

    def config(self, space: SearchSpace, name: str = "searched") -> EnsembleConfig:
        t, mt, jt = space.temperature, space.max_tokens, space.judge_max_tokens
        layers: list[list[ComponentSpec]] = [
            [ComponentSpec(type="generator", model=self.generator, samples=self.samples, temperature=t, max_tokens=mt)]
        ]
        if self.critic or self.ranker_top_k or self.fuser:
            for b in range(self.blocks):
                if self.critic:
                    layers.append([ComponentSpec(type="critic", model=self.judge, temperature=0.0, max_tokens=jt)])
                if self.ranker_top_k:
                    layers.append(
                        [
                            ComponentSpec(
                                type="ranker", model=self.judge, top_k=self.ranker_top_k, temperature=0.0, max_tokens=jt
                            )
                        ]
                    )
                if self.fuser:
                    width = 1 if b == self.blocks - 1 else self.samples
                    layers.append(
                        [ComponentSpec(type="fuser", model=self.judge, samples=width, temperature=t, max_tokens=mt)]
                    )
        if self.verifier:
            layers.append([ComponentSpec(type="verifier", model=self.judge, temperature=0.0, max_tokens=jt)])
        return EnsembleConfig(name=name, description=self.label(), layers=[LayerSpec(components=c) for c in layers])


class ScorerSpec(_Strict):
    """How an answer is scored: ``exact`` match with ``expected``, a registered Python ``checker``,
    or an LLM ``judge`` (``model``; every judgment a metered call)."""

    type: Literal["exact", "checker", "judge"] = "exact"
    name: str | None = Field(default=None, description="checker: the registered checker's name.")
    model: str | None = Field(default=None, description="judge: the model that judges.")
    answer_pattern: str | None = Field(default=None, max_length=500, description="exact: regex for the answer.")
    max_tokens: int = Field(default=256, ge=1, le=100_000, description="judge: max_tokens per judgment.")
    max_parse_retries: int = Field(default=2, ge=0, le=10, description="judge: re-asks after an unreadable verdict.")

    @model_validator(mode="after")
    def _coherent(self) -> ScorerSpec:
        if self.type == "checker" and not self.name:
            raise ValueError("a checker scorer needs name (a registered checker)")
        if self.type == "judge" and not self.model:
            raise ValueError("a judge scorer needs model")
        if self.type != "checker" and self.name is not None:
            raise ValueError("name applies to checker scorers only")
        if self.type != "judge" and self.model is not None:
            raise ValueError("model applies to judge scorers only")
        return self


class CandidateResult(_Strict):
    """One evaluated candidate (the value of step ``search/cand/<i>``)."""

    index: int
    method: Literal["random", "bayes"]
    arch: Arch
    label: str
    quality: float
    scores: list[float]
    unjudged: int = Field(default=0, description="Judge verdicts that stayed unreadable (scored 0).")
    spend: Spend


class FrontPoint(_Strict):
    index: int
    label: str
    quality: float
    cost: float


class SearchReport(_Strict):
    method: Literal["random", "bayes"]
    seed: int
    dev_size: int
    cost_metric: Literal["usd", "tokens", "output_tokens", "model_calls"]
    candidates: list[CandidateResult]
    best: CandidateResult | None
    best_config: dict[str, Any] | None = Field(description="The best candidate as an ensemble config.")
    front: list[FrontPoint] = Field(description="Pareto front: no other candidate is as good and cheaper.")
    spend: Spend = Field(description="Committed by the evaluations reported (not a discarded one).")
    stop: Literal["completed", "space_exhausted", "budget_exhausted"]
    detail: str | None = None


def cost_of(spend: Spend, metric: str) -> float:
    if metric == "usd":
        return spend.usd
    if metric == "tokens":
        return float(spend.tokens)
    if metric == "output_tokens":
        return float(spend.output_tokens)
    return float(spend.model_calls)


def _metric(
    candidates: Sequence[CandidateResult], metric: CostMetric
) -> Literal["usd", "tokens", "output_tokens", "model_calls"]:
    if metric != "auto":
        return metric
    return "usd" if any(c.spend.usd_pico > 0 for c in candidates) else "tokens"


def pareto_front(points: Sequence[tuple[int, float, float]]) -> list[int]:
    """Indices of (index, quality, cost) points no other point dominates (quality at least as high
    and cost at most as high, one of them strictly), by cost ascending; equal points keep the first."""
    front: list[int] = []
    for i, q, c in points:
        dominated = any(
            (q2 >= q and c2 <= c and (q2 > q or c2 < c)) or (q2 == q and c2 == c and j < i) for j, q2, c2 in points
        )
        if not dominated:
            front.append(i)
    by = {i: (c, -q) for i, q, c in points}
    return sorted(front, key=lambda i: by[i])


def _best(candidates: Sequence[CandidateResult], metric: str) -> CandidateResult | None:
    if not candidates:
        return None
    return min(candidates, key=lambda c: (-c.quality, cost_of(c.spend, metric), c.index))


#: Dimensions whose values are ordered (distance = difference of positions in the choice list).
_ORDERED = ("samples", "ranker_top_k", "blocks")


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
    """Solve ``low^T x = b``."""
    n = len(low)
    x = [0.0] * n
    for i in reversed(range(n)):
        x[i] = (b[i] - sum(low[k][i] * x[k] for k in range(i + 1, n))) / low[i][i]
    return x


class _Proposer:
    """Seeded proposals: uniform over untried points, then Bayesian optimisation.

    The Bayesian step fits a Gaussian process to the objective of the candidates tried so far, with
    a kernel ``s2 * exp(-distance / LENGTH)`` where the distance between two architectures sums, per
    dimension, 1 for different categorical values and the difference of positions (scaled to 0..1)
    for ordered ones; the product form lets it learn interactions (a verifier helps only with
    several samples). It proposes the untried point with the highest expected improvement over the
    best objective so far (all untried points when the space has at most 4096, else 2048 drawn).
    """

    LENGTH = 2.0

    def __init__(
        self, space: SearchSpace, seed: int, method: str, n_random: int, cost_weight: float, dev_size: int
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
        for combo in _product(self.choices):
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
            if dim in _ORDERED and len(values) > 1:
                pa, pb = self._pos[dim].get(repr(va), 0), self._pos[dim].get(repr(vb), 0)
                d += abs(pa - pb) / (len(values) - 1)
            else:
                d += 1.0
        return d

    def propose(self, done: Sequence[CandidateResult], metric: str) -> tuple[Arch | None, Literal["random", "bayes"]]:
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
        self.rng.shuffle(pool)  # ties in expected improvement go to a seeded random one
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


def _product(choices: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{}]
    for dim, values in choices.items():
        out = [{**o, dim: v} for o in out for v in values]
    return out


class _Judge:
    """An LLM judge through the meter: the verdict prompt with the reference answer as reasoning."""

    def __init__(self, spec: ScorerSpec, resolver: ModelResolver) -> None:
        assert spec.model is not None
        self.spec = spec
        self.model = resolver.resolve(spec.model, "scorer.model: ")

    async def score(self, meter: Metered, problem: Problem, answer: str, seed: int) -> float | None:
        note = (
            f"The reference answer is: {problem.expected}. Compare the response's final answer with it."
            if problem.expected is not None
            else "No reference answer is given; judge the response on its own."
        )
        convo = [
            ChatMessage(role="system", content="You judge whether answers are correct."),
            ChatMessage(role="user", content=prompts.verdict_prompt(problem.text(), answer, note)),
        ]
        for attempt in range(self.spec.max_parse_retries + 1):
            request = ChatRequest(
                model=self.model,
                messages=convo,
                temperature=0.0,
                max_tokens=self.spec.max_tokens,
                seed=stable_seed(seed, "judge", attempt),
            )
            response = await meter.chat(request, model=self.model)
            text = response.choices[0].message.content or ""
            try:
                return 1.0 if parsing.parse_verdict(text) else 0.0
            except parsing.ParseError as e:
                convo = [
                    *convo,
                    ChatMessage(role="assistant", content=text),
                    ChatMessage(
                        role="user",
                        content=prompts.retry_note(str(e), "an explanation ending with [Correct] or [Incorrect]"),
                    ),
                ]
        return None


def _shrunk(result: EnsembleResult) -> bool:
    return any(c.samples < c.samples_planned for layer in result.layers for c in layer.components)


async def architecture_search(
    dev_set: Sequence[Problem | Mapping[str, Any]],
    space: SearchSpace | Mapping[str, Any],
    meter: Metered,
    *,
    scorer: ScorerSpec | Mapping[str, Any] | str | Checker = "exact",
    method: Literal["random", "bayes"] = "bayes",
    max_candidates: int = 20,
    n_random: int = 6,
    seed: int = 0,
    cost_metric: CostMetric = "auto",
    cost_weight: float = 0.0,
    concurrency: int = 4,
    max_parse_retries: int = 2,
    resolver: ModelResolver | None = None,
    step: StepFn | None = None,
    emit: Emitter | None = None,
    check_cancel: Callable[[], None] | None = None,
) -> SearchReport:
    """Search architectures on ``dev_set`` (see the module). ``scorer``: ``"exact"``, a
    ``ScorerSpec`` (or its dict), a registered checker's name, or a callable
    ``(response, problem) -> bool | float``. ``step``: a durable step runner (``ctx.step``);
    ``emit``: an event sink (one ``log`` event per candidate)."""
    problems = [p if isinstance(p, Problem) else Problem.model_validate(p) for p in dev_set]
    if not problems:
        raise ValueError("architecture search needs a dev set of at least one example")
    sp = space if isinstance(space, SearchSpace) else SearchSpace.model_validate(space)
    if max_candidates < 1:
        raise ValueError(f"max_candidates must be at least 1, got {max_candidates}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    resolver = resolver or ModelResolver(served=meter.router.models())
    for name in [*sp.generators, *(sp.judges or [])]:
        resolver.resolve(name, "space: ")  # an unserved model fails before any call
    check: Checker | None = None
    judge: _Judge | None = None
    exact = False
    if isinstance(scorer, str) or callable(scorer):
        check = make_checker(scorer)
        exact = scorer == "exact"
    else:
        spec = scorer if isinstance(scorer, ScorerSpec) else ScorerSpec.model_validate(scorer)
        if spec.type == "judge":
            judge = _Judge(spec, resolver)
        else:
            check = make_checker(spec.name or "exact", spec.answer_pattern)
            exact = spec.type == "exact"
    missing = [i for i, p in enumerate(problems) if p.expected is None]
    if exact and missing:
        raise CheckerError(f"exact-match scoring needs expected answers; dev examples {missing} have none")

    proposer = _Proposer(sp, seed, method, n_random, cost_weight, len(problems))
    done: list[CandidateResult] = []
    stop: Literal["completed", "space_exhausted", "budget_exhausted"] = "completed"
    detail: str | None = None

    async def evaluate(i: int, arch: Arch, how: Literal["random", "bayes"]) -> dict[str, Any]:
        spend = Spend()
        scoped = recording(meter.child(f"search/c{i}", stage="search", agent=f"cand{i}"), spend)
        config = arch.config(sp, name=f"search-c{i}")
        gate = asyncio.Semaphore(concurrency)

        async def example(j: int, problem: Problem) -> tuple[float, bool]:
            async with gate:
                ex_seed = stable_seed(seed, "example", j)  # common random numbers across candidates
                res = await Executor(
                    config,
                    problem.messages(),
                    scoped,
                    resolver=resolver,
                    seed=ex_seed,
                    max_parse_retries=max_parse_retries,
                ).run()
                if res.stop != "completed" or _shrunk(res):
                    raise BudgetExhausted(scoped.scope, "model_calls", 0)
                if judge is not None:
                    got = await judge.score(scoped.child("judge", stage="search/judge"), problem, res.output, ex_seed)
                    return (0.0, True) if got is None else (got, False)
                assert check is not None
                return run_checker(check, res.output, problem), False

        outcomes = await asyncio.gather(*(example(j, p) for j, p in enumerate(problems)), return_exceptions=True)
        for o in outcomes:
            if isinstance(o, BaseException):
                raise o
        scores = [s for s, _ in outcomes]  # type: ignore[misc]
        result = CandidateResult(
            index=i,
            method=how,
            arch=arch,
            label=arch.label(),
            quality=sum(scores) / len(scores),
            scores=scores,
            unjudged=sum(u for _, u in outcomes),  # type: ignore[misc]
            spend=spend,
        )
        if emit is not None:
            await emit(
                "log",
                {
                    "kind": "ensemble.search.candidate",
                    "candidate": i,
                    "method": how,
                    "arch": arch.model_dump(),
                    "label": result.label,
                    "quality": result.quality,
                    "usd": spend.usd,
                    "tokens": spend.tokens,
                    "model_calls": spend.model_calls,
                },
            )
        return result.model_dump(mode="json")

    for i in range(max_candidates):
        if check_cancel is not None:
            check_cancel()
        arch, how = proposer.propose(done, _metric(done, cost_metric))
        if arch is None:
            stop, detail = "space_exhausted", f"all {len(done)} distinct architectures of the space were evaluated"
            break
        key = f"search/cand/{i}"
        try:
            body = functools.partial(evaluate, i, arch, how)
            raw = await (step(key, body) if step else body())
        except BudgetExhausted as e:
            stop, detail = "budget_exhausted", f"candidate {i} ({arch.label()}) not completed: {e}"
            log.info("architecture search stopped: %s", detail)
            break
        got = CandidateResult.model_validate(raw)
        if got.arch != arch:
            raise EnsembleError(
                f"{key} was committed for {got.label!r} but this search proposes {arch.label()!r}: "
                "the dev set, space, scorer or seed changed since the run started"
            )
        done.append(got)

    metric = _metric(done, cost_metric)
    best = _best(done, metric)
    front_ids = pareto_front([(c.index, c.quality, cost_of(c.spend, metric)) for c in done])
    by_index = {c.index: c for c in done}
    total = Spend()
    for c in done:
        total += c.spend
    report = SearchReport(
        method=method,
        seed=seed,
        dev_size=len(problems),
        cost_metric=metric,
        candidates=done,
        best=best,
        best_config=best.arch.config(sp, name="searched-best").model_dump(exclude_defaults=True) if best else None,
        front=[
            FrontPoint(
                index=k, label=by_index[k].label, quality=by_index[k].quality, cost=cost_of(by_index[k].spend, metric)
            )
            for k in front_ids
        ],
        spend=total,
        stop=stop,
        detail=detail,
    )
    if emit is not None:
        await emit(
            "log",
            {
                "kind": "ensemble.search.done",
                "stop": stop,
                "candidates": len(done),
                "best": best.index if best else None,
                "front": front_ids,
            },
        )
    return report


# ------------------------------------------------------------------------------------------------
# The run kind
# ------------------------------------------------------------------------------------------------


class SearchOptions(_Strict):
    """Options of an ``ensemble_search`` run (``spec.options``); the task's ``input`` describes it."""

    dev_set: list[Problem] = Field(min_length=1, max_length=10_000, description="Examples: input, expected, ...")
    space: SearchSpace
    scorer: ScorerSpec | str = Field(default="exact", description="'exact', a registered checker, or a ScorerSpec.")
    method: Literal["random", "bayes"] = "bayes"
    max_candidates: int = Field(default=20, ge=1, le=10_000)
    n_random: int = Field(default=6, ge=0, le=10_000, description="Random candidates before the Bayesian ones.")
    seed: int = 0
    cost_metric: CostMetric = "auto"
    cost_weight: float = Field(default=0.0, ge=0, le=100, description="Cost penalty in the Bayesian objective.")
    concurrency: int = Field(default=4, ge=1, le=256, description="Dev examples evaluated at once.")
    max_parse_retries: int = Field(default=2, ge=0, le=10)
    model_map: dict[str, str] = Field(default_factory=dict, description="Names in the space → served models.")
    default_model: str | None = None


def _check(spec: TaskSpec) -> None:
    opts = SearchOptions.model_validate(spec.options)
    if isinstance(opts.scorer, str):
        try:
            make_checker(opts.scorer)
        except CheckerError as e:
            raise ValueError(f"options.scorer: {e}") from None


async def run(ctx: RunContext) -> Outcome:
    opts = SearchOptions.model_validate(ctx.spec.options)
    resolver = ModelResolver(served=ctx.router.models(), model_map=opts.model_map, default_model=opts.default_model)

    async def step(key: str, fn: Callable[[], Awaitable[dict[str, Any]]]) -> Any:
        return await ctx.step(key, fn)

    report = await architecture_search(
        opts.dev_set,
        opts.space,
        ctx.meter,
        scorer=opts.scorer,
        method=opts.method,
        max_candidates=opts.max_candidates,
        n_random=opts.n_random,
        seed=opts.seed,
        cost_metric=opts.cost_metric,
        cost_weight=opts.cost_weight,
        concurrency=opts.concurrency,
        max_parse_retries=opts.max_parse_retries,
        resolver=resolver,
        step=step,
        emit=ctx.emit,
        check_cancel=ctx.check_cancel,
    )
    best = report.best
    output = (
        f"best of {len(report.candidates)} candidates: {best.label} (quality {best.quality:.3f}, "
        f"{report.cost_metric} {cost_of(best.spend, report.cost_metric):g})"
        if best
        else "no candidate was evaluated"
    )
    if best is not None:
        ctx.partial_output = output
    result = report.model_dump(mode="json")
    if report.stop == "budget_exhausted":
        return Outcome(
            output=output,
            result=result,
            status=RunStatus.BUDGET_EXHAUSTED,
            stop_reason=StopReason.BUDGET_EXHAUSTED,
            detail=report.detail,
        )
    return Outcome(output=output, result=result)


KIND = RunKind(
    name="ensemble_search",
    run=run,
    options=SearchOptions,
    description="Archon-style architecture search: ensembles evaluated on a dev set, quality against cost.",
    check=_check,
)
