"""Runs an ensemble layer by layer.

Within a layer every component starts at once (``asyncio.gather``) and generators that share model
and sampling settings send all their samples as one request with ``n``, so a layer takes about as
long as its slowest call, not the sum of its calls. Layers run in order, each as one durable step
when a step runner is given (a resumed run replays finished layers instead of calling models).

The final answer is the first candidate of the last layer. The order is deterministic: components'
outputs are merged in component order, samples in sample order, rankers put the best first,
evaluators sort stably by tests passed, voters keep the winning answer's candidates in order (a tie
in votes goes to the answer seen first). Archon instead picks at random when several remain.

Budgets: before each layer the executor reads what the ledger has left (and the layer's own
``budget``) and draws fewer samples when the layer's worst case would not fit. When a call is
refused anyway (``BudgetExhausted``), the ensemble stops at the last complete layer and returns its
best candidate with the reason; with no complete layer, the error propagates.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from conclave.core.context import Emitter, Metered
from conclave.core.ledger import BudgetExhausted, enclosing
from conclave.core.steering import is_outer_scope
from conclave.schema import Usage
from conclave.schema.chat import ChatMessage

from .components import (
    Call,
    Candidate,
    ComponentOutput,
    EnsembleState,
    Env,
    gather_all,
    run_component,
    run_generators,
)
from .config import ComponentSpec, EnsembleConfig, Plan, plan
from .prompts import with_unit_tests
from .scoring import CheckerError, Problem, get_checker, recording

__all__ = [
    "ComponentReport",
    "EnsembleError",
    "EnsembleResult",
    "Executor",
    "LayerResult",
    "ModelResolver",
    "StepRunner",
]

log = logging.getLogger(__name__)

StepRunner = Callable[[str, Callable[[], Awaitable["LayerResult"]]], Awaitable["LayerResult"]]


class EnsembleError(ValueError):
    """An ensemble that cannot run as configured (e.g. a model that is not served)."""


class _Rec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ComponentReport(_Rec):
    index: int
    type: str
    label: str
    model: str | None = None
    samples: int = 0
    samples_planned: int = 0
    produced: int | None = None
    degraded: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class LayerResult(_Rec):
    """The durable record of one finished layer (the value of step ``layer/<i>``). ``usage`` is what
    the ledger committed for the layer's calls."""

    index: int
    state: EnsembleState
    usage: Usage
    components: list[ComponentReport]

    @field_validator("usage", mode="before")
    @classmethod
    def _recorded_tally(cls, v: Any) -> Any:
        """A layer committed before usage was one type recorded ``requests``, ``prompt_tokens`` and
        ``completion_tokens``; a run resumed across the upgrade replays it as the same ``Usage``."""
        if isinstance(v, dict) and "requests" in v:
            return Usage(
                input_tokens=v.get("prompt_tokens", 0),
                output_tokens=v.get("completion_tokens", 0),
                cached_tokens=v.get("cached_tokens", 0),
                model_calls=v.get("requests", 0),
            )
        return v


class EnsembleResult(_Rec):
    output: str
    candidates: list[Candidate]
    layers_completed: int
    layers_total: int
    stop: Literal["completed", "budget_exhausted"] = "completed"
    detail: str | None = None
    usage: Usage = Field(default_factory=Usage, description="What the ledger committed for every call.")
    layers: list[LayerResult] = Field(default_factory=list)


@dataclass
class ModelResolver:
    """Maps the model names of a config onto served models: the map first, then the name itself if
    served, then the default model. A name none of these cover is an error naming it."""

    served: Sequence[str]
    model_map: Mapping[str, str] = field(default_factory=dict)
    default_model: str | None = None

    def resolve(self, name: str, where: str = "") -> str:
        served = set(self.served)
        target = self.model_map.get(name)
        if target is not None:
            if target not in served:
                raise EnsembleError(
                    f"{where}model_map sends {name!r} to {target!r}, which is not served "
                    f"(served: {', '.join(sorted(served)) or 'none'})"
                )
            return target
        if name in served:
            return name
        if self.default_model is not None:
            if self.default_model not in served:
                raise EnsembleError(f"default model {self.default_model!r} is not served")
            return self.default_model
        raise EnsembleError(
            f"{where}model {name!r} is not served and neither model_map nor a default model covers it "
            f"(served: {', '.join(sorted(served)) or 'none'})"
        )


def _shrink(
    cfg: EnsembleConfig, i: int, n_cand: int, cap: int | None, room: Mapping[str, int]
) -> tuple[list[int], Plan]:
    """Samples per component of layer ``i`` such that this layer, followed by the later layers at one
    sample per component, fits ``room`` (``model_calls``/``output_tokens``): the component with the
    most samples gives some up (the later one on a tie), never below one. Returns the samples and
    the plan of this layer alone."""
    layer = cfg.layers[i]
    samples = [c.samples for c in layer.components]
    sampling = [j for j, c in enumerate(layer.components) if c.type in ("generator", "fuser")]
    least = {k: [1] * len(cfg.layers[k].components) for k in range(i + 1, len(cfg.layers))}

    def cost(vec: list[int]) -> Plan:
        return plan(cfg, samples={i: vec, **least}, start=i, n_cand=n_cand, cap=cap)

    def over(p: Plan) -> int:
        """How many tokens (or calls) too many; 0 when it fits."""
        worst = 0
        if "output_tokens" in room:
            worst = max(worst, p.output_tokens - room["output_tokens"])
        if "model_calls" in room:
            worst = max(worst, p.total_requests - room["model_calls"])
        return worst

    p = cost(samples)
    while over(p) > 0:
        movable = [j for j in sampling if samples[j] > 1]
        if not movable:
            break
        j = max(movable, key=lambda k: (samples[k], k))
        mt = min(layer.components[j].max_tokens, cap) if cap else layer.components[j].max_tokens
        step = max(1, over(p) // max(1, mt)) if "output_tokens" in room else 1
        samples[j] = max(1, samples[j] - step)
        p = cost(samples)
    return samples, plan(cfg, samples={i: samples}, start=i, n_cand=n_cand, cap=cap)


async def _ledger_room(meter: Metered, extra_scopes: Sequence[str]) -> dict[str, int]:
    """What the ledger has left for model calls and output tokens, the tightest over the meter's
    scope, the scopes enclosing it and ``extra_scopes``; empty when the run has no caps."""
    if not meter.ledger.has_caps:
        return {}
    snap = await meter.ledger.snapshot()
    room: dict[str, int] = {}
    for scope in [*enclosing(meter.scope), *extra_scopes]:
        for limit in ("model_calls", "output_tokens"):
            left = snap.left(scope, limit)
            if left is not None:
                room[limit] = min(room.get(limit, left), max(0, left))
    return room


class Executor:
    """One execution of an ensemble over one conversation."""

    def __init__(
        self,
        config: EnsembleConfig,
        messages: Sequence[ChatMessage],
        meter: Metered,
        *,
        resolver: ModelResolver | None = None,
        step: StepRunner | None = None,
        emit: Emitter | None = None,
        on_layer: Callable[[LayerResult], None] | None = None,
        check_cancel: Callable[[], None] | None = None,
        seed: int = 0,
        max_parse_retries: int = 2,
        max_tokens_cap: int | None = None,
        sequential: bool = False,
        problem: Problem | None = None,
    ) -> None:
        if not messages or messages[-1].role != "user":
            raise EnsembleError("an ensemble answers a conversation whose last message is from the user")
        self.config = config
        self.messages = list(messages)
        self.meter = meter
        self.resolver = resolver or ModelResolver(
            served=meter.router.models(), model_map=config.model_map, default_model=config.default_model
        )
        self._step = step
        self._emit = emit
        self._on_layer = on_layer
        self._check_cancel = check_cancel
        self.seed = seed
        self.retries = max_parse_retries
        self.cap = max_tokens_cap
        self.sequential = sequential
        self.problem = problem
        self._check_checkers()
        # Resolve every model before any call: a config that cannot run fails before spending.
        self.models: list[list[str | None]] = [
            [
                self.resolver.resolve(c.model, f"layers[{i}][{j}]: ") if c.model is not None else None
                for j, c in enumerate(layer.components)
            ]
            for i, layer in enumerate(config.layers)
        ]

    def _check_checkers(self) -> None:
        """Checker components name a known checker and, for exact match, have an expected answer."""
        for i, layer in enumerate(self.config.layers):
            for j, c in enumerate(layer.components):
                if c.type != "checker":
                    continue
                try:
                    get_checker(c.checker or "exact", c.answer_pattern)
                except CheckerError as e:
                    raise EnsembleError(f"layers[{i}][{j}]: {e}") from None
                has_expected = c.expected is not None or (self.problem is not None and self.problem.expected)
                if (c.checker or "exact") == "exact" and not has_expected:
                    raise EnsembleError(
                        f"layers[{i}][{j}]: an exact-match checker needs an expected answer "
                        "(in the component or the run's problem)"
                    )

    async def run(self) -> EnsembleResult:
        state = EnsembleState()
        done: list[LayerResult] = []
        usage = Usage()
        for i in range(len(self.config.layers)):
            if self._check_cancel is not None:
                self._check_cancel()
            live = Usage()
            try:
                result = await self._run_step(i, state, live)
            except BudgetExhausted as e:
                usage += live
                if not state.candidates or is_outer_scope(e.scope):
                    raise  # nothing to answer with, or the tenant's budget: the run pauses and continues
                log.info("ensemble %s stopped before finishing layer %d: %s", self.config.name, i, e)
                return self._result(state, done, usage, stop="budget_exhausted", detail=f"layer {i}: {e}")
            usage += result.usage
            done.append(result)
            state = result.state
            if self._on_layer is not None:
                self._on_layer(result)
        return self._result(state, done, usage)

    def _result(
        self,
        state: EnsembleState,
        done: list[LayerResult],
        usage: Usage,
        *,
        stop: Literal["completed", "budget_exhausted"] = "completed",
        detail: str | None = None,
    ) -> EnsembleResult:
        if not state.candidates:
            raise EnsembleError(f"ensemble {self.config.name!r} produced no candidate (its layers make none)")
        return EnsembleResult(
            output=state.candidates[0].text,
            candidates=state.candidates,
            layers_completed=len(done),
            layers_total=len(self.config.layers),
            stop=stop,
            detail=detail,
            usage=usage,
            layers=done,
        )

    async def _run_step(self, i: int, state: EnsembleState, live: Usage) -> LayerResult:
        async def body() -> LayerResult:
            return await self._layer(i, state, live)

        if self._step is None:
            return await body()
        value: Any = await self._step(f"layer/{i}", body)
        # A step runner that replays without the model hands back the recorded JSON.
        return value if isinstance(value, LayerResult) else LayerResult.model_validate(value)

    async def _layer(self, i: int, prev: EnsembleState, usage: Usage) -> LayerResult:
        layer = self.config.layers[i]
        n_cand = len(prev.candidates)
        room = await _ledger_room(self.meter, [f"{self.meter.scope}/layer{i}"])
        if layer.budget is not None:
            for limit, value in (
                ("model_calls", layer.budget.model_calls),
                ("output_tokens", layer.budget.output_tokens),
            ):
                if value is not None:
                    room[limit] = min(room.get(limit, value), value)
        samples, mine = _shrink(self.config, i, n_cand, self.cap, room)
        if "model_calls" in room and mine.layers[0].requests > room["model_calls"]:
            raise BudgetExhausted(self.meter.scope, "model_calls", room["model_calls"])

        bare = self.messages[-1].text()
        query = with_unit_tests(bare, prev.unit_tests)

        def env_of(j: int) -> Env:
            return Env(
                layer=i,
                index=j,
                messages=self.messages,
                query=query,
                bare_query=bare,
                prev=prev,
                retries=_retries(layer.components[j], self.retries),
                sequential=self.sequential,
                problem=self.problem,
            )

        def call_for(j: int, label: str) -> Call:
            spec = layer.components[j]
            model = self.models[i][j]
            assert model is not None
            meter = self.meter.child(f"layer{i}", stage=f"layer{i}/{spec.type}", agent=label)
            return Call(
                meter=recording(meter, usage),
                model=model,
                spec=spec,
                seed=self.seed,
                max_tokens_cap=self.cap,
                sequential=self.sequential,
            )

        # Same-prompt generators share one request (``n``) unless run sequentially or racing.
        groups: dict[tuple[str, float, int, bool], list[tuple[int, ComponentSpec, int]]] = {}
        singles: list[int] = []
        for j, c in enumerate(layer.components):
            if c.type == "generator" and not c.first_finish and not self.sequential:
                key = (self.models[i][j] or "", c.temperature, c.max_tokens, c.no_system)
                groups.setdefault(key, []).append((j, c, samples[j]))
            else:
                singles.append(j)

        def label(j: int) -> str:
            return f"{layer.components[j].label}#{j}"

        async def group_task(members: list[tuple[int, ComponentSpec, int]]) -> dict[int, ComponentOutput]:
            name = "+".join(label(j) for j, _, _ in members)
            return await run_generators(env_of, members, call_for(members[0][0], name))

        async def single_task(j: int) -> dict[int, ComponentOutput]:
            spec = layer.components[j]
            call = call_for(j, label(j)) if spec.issues_call() else None
            return {j: await run_component(env_of(j), spec, call, samples[j])}

        tasks: list[Awaitable[dict[int, ComponentOutput]]] = [group_task(m) for m in groups.values()]
        tasks += [single_task(j) for j in singles]
        outputs: dict[int, ComponentOutput] = {}
        for part in await gather_all(tasks, sequential=self.sequential):
            outputs.update(part)

        state = _merge(prev, [outputs[j] for j in range(len(layer.components))])
        reports = [
            ComponentReport(
                index=j,
                type=c.type,
                label=c.label,
                model=self.models[i][j],
                samples=samples[j],
                samples_planned=c.samples,
                produced=None if outputs[j].candidates is None else len(outputs[j].candidates or []),
                degraded=outputs[j].degraded,
                detail=outputs[j].detail,
            )
            for j, c in enumerate(layer.components)
        ]
        result = LayerResult(index=i, state=state, usage=usage.model_copy(deep=True), components=reports)
        if self._emit is not None:
            await self._emit("ensemble.layer", _event(self.config.name, result))
        return result


def _retries(spec: ComponentSpec, default: int) -> int:
    return default if spec.max_parse_retries is None else spec.max_parse_retries


def _merge(prev: EnsembleState, outputs: Sequence[ComponentOutput]) -> EnsembleState:
    """A layer's state: candidates of the components that produce them, in component order (else the
    previous ones pass on); critiques attach to candidates by origin; unit tests replace the old."""
    producers = [o.candidates for o in outputs if o.candidates is not None]
    cands = [c for group in producers for c in group] if producers else list(prev.candidates)
    critiques: dict[str, list[str]] = {}
    for o in outputs:
        for origin, text in o.critiques.items():
            critiques.setdefault(origin, []).append(text)
    if critiques:
        cands = [
            c.model_copy(update={"critique": "\n\n".join(critiques[c.origin])}) if c.origin in critiques else c
            for c in cands
        ]
    tests = [t for o in outputs if o.unit_tests is not None for t in o.unit_tests]
    has_tests = any(o.unit_tests is not None for o in outputs)
    return EnsembleState(candidates=cands, unit_tests=tests if has_tests else list(prev.unit_tests))


def _event(name: str, r: LayerResult) -> dict[str, Any]:
    return {
        "ensemble": name,
        "layer": r.index,
        "candidates": len(r.state.candidates),
        "unit_tests": len(r.state.unit_tests),
        "requests": r.usage.model_calls,
        "usage": {"prompt_tokens": r.usage.input_tokens, "completion_tokens": r.usage.output_tokens},
        "components": [
            {
                "type": c.type,
                "label": c.label,
                "model": c.model,
                "samples": c.samples,
                **({"samples_planned": c.samples_planned} if c.samples != c.samples_planned else {}),
                **({"degraded": c.degraded} if c.degraded else {}),
                **(
                    {"passed": sum(c.detail.get("passed", [])), "solved": c.detail.get("solved")}
                    if c.type == "checker"
                    else {}
                ),
            }
            for c in r.components
        ],
    }


async def run_ensemble(
    config: EnsembleConfig, messages: Sequence[ChatMessage], meter: Metered, **kwargs: Any
) -> EnsembleResult:
    """Convenience: build an ``Executor`` and run it."""
    return await Executor(config, messages, meter, **kwargs).run()
