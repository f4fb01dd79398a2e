"""The ``ensemble`` run kind: an ensemble answering the task, each layer one durable step.

The ensemble is ``spec.ensemble`` (a name, or an inline config) or ``spec.model == "ensemble/<name>"``.
Names are looked up in the ``ensembles_dir`` of the settings, then among the built-ins. A resumed
run replays the layers it finished (``layer/<i>`` steps) and continues with the next one.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from conclave.core.context import RunContext
from conclave.core.kinds import Outcome, RunKind
from conclave.core.ledger import BudgetExhausted
from conclave.core.steering import is_outer_scope
from conclave.schema import RunStatus, StopReason, TaskSpec

from ..chat import messages_of
from .config import ConfigFileError, EnsembleConfig
from .executor import Executor, LayerResult, ModelResolver
from .library import configured_dirs, resolve_ensemble
from .scoring import Problem

__all__ = ["KIND", "EnsembleOptions", "ensemble_of"]

log = logging.getLogger(__name__)


class EnsembleOptions(BaseModel):
    """Options of an ``ensemble`` run (``spec.options``)."""

    model_config = ConfigDict(extra="forbid")

    model_map: dict[str, str] = Field(
        default_factory=dict, description="Model names in the config → served models; wins over the config's map."
    )
    default_model: str | None = Field(default=None, description="Served model for names no map covers.")
    max_parse_retries: int = Field(default=2, ge=0, le=10, description="Re-asks after an unparseable judge output.")
    max_tokens: int | None = Field(default=None, ge=1, le=100_000, description="Caps max_tokens of every call.")
    seed: int = Field(default=0, description="Seeds every sampled call; the same seed repeats a run's requests.")
    expected: str | None = Field(
        default=None, max_length=100_000, description="The expected answer, for checker components (exact match)."
    )


def _extra_dirs() -> list[Path]:
    return configured_dirs()


class EnsembleSpecError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def ensemble_of(spec: TaskSpec) -> EnsembleConfig:
    """The ensemble a task asks for; ``EnsembleSpecError`` naming the field when there is none or it
    does not load."""
    source: str | dict[str, Any]
    if spec.ensemble is not None:
        source, field = spec.ensemble, "ensemble"
    elif spec.model and spec.model.startswith("ensemble/"):
        source, field = spec.model, "model"
    else:
        raise EnsembleSpecError(
            "ensemble", "an ensemble run needs 'ensemble' (a name or a config) or model 'ensemble/<name>'"
        )
    try:
        return resolve_ensemble(source, _extra_dirs())
    except ConfigFileError as e:
        raise EnsembleSpecError(field, str(e)) from None


def _check(spec: TaskSpec) -> None:
    ensemble_of(spec)


async def run(ctx: RunContext) -> Outcome:
    opts = EnsembleOptions.model_validate(ctx.spec.options)
    config = ensemble_of(ctx.spec)
    resolver = ModelResolver(
        served=ctx.router.models(),
        model_map={**config.model_map, **opts.model_map},
        default_model=opts.default_model or config.default_model,
    )

    async def step(key: str, fn: Any) -> LayerResult:
        return await ctx.step(key, fn, model=LayerResult)

    def on_layer(result: LayerResult) -> None:
        if result.state.candidates:
            ctx.partial_output = result.state.candidates[0].text

    executor = Executor(
        config,
        messages_of(ctx),
        ctx.meter,
        resolver=resolver,
        step=step,
        emit=ctx.emit,
        on_layer=on_layer,
        check_cancel=ctx.check_cancel,
        seed=opts.seed,
        max_parse_retries=opts.max_parse_retries,
        max_tokens_cap=opts.max_tokens,
        problem=Problem(input=ctx.spec.input, expected=opts.expected),
    )
    try:
        result = await executor.run()
    except BudgetExhausted as e:
        if is_outer_scope(e.scope):
            raise  # the tenant's (or key's) budget: the runner pauses the run
        return Outcome(
            output=ctx.partial_output,
            status=RunStatus.BUDGET_EXHAUSTED,
            stop_reason=StopReason.BUDGET_EXHAUSTED,
            detail=f"no layer of ensemble {config.name!r} completed: {e}",
        )
    summary = {
        "ensemble": config.name,
        "layers_completed": result.layers_completed,
        "layers_total": result.layers_total,
        "stop": result.stop,
        "candidates": [c.model_dump() for c in result.candidates],
        "usage": result.usage.model_dump(),
    }
    if result.stop == "budget_exhausted":
        return Outcome(
            output=result.output,
            result=summary,
            status=RunStatus.BUDGET_EXHAUSTED,
            stop_reason=StopReason.BUDGET_EXHAUSTED,
            detail=result.detail,
        )
    return Outcome(output=result.output, result=summary)


KIND = RunKind(
    name="ensemble",
    run=run,
    options=EnsembleOptions,
    description="An Archon-style layered ensemble (or a test-time strategy) answering the task.",
    check=_check,
)
