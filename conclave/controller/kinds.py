"""Run kinds: the pluggable bodies a run executes (``chat``, ``agent``, ``ensemble``, ``research``).

A kind is a module exposing ``KIND: RunKind``. Kinds are imported lazily so that the API can
validate a submission without loading agent code it does not need. A submission is validated
against its kind (its ``options`` model) before it is queued, so a bad spec is a 422, never a
failed run.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from conclave.schema import RunStatus, StopReason, TaskSpec

if TYPE_CHECKING:
    from conclave.agents.context import RunContext

__all__ = ["KINDS", "NoOptions", "Outcome", "RunKind", "SpecError", "get_kind", "register_kinds", "validate_spec"]


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class Outcome:
    """How a run body ended."""

    output: str | None = None
    result: dict[str, Any] | None = None
    status: RunStatus = RunStatus.SUCCEEDED
    stop_reason: StopReason = StopReason.END_TURN
    detail: str | None = None


@dataclass(frozen=True)
class RunKind:
    name: str
    run: Callable[[RunContext], Awaitable[Outcome]]
    options: type[BaseModel] = NoOptions
    description: str = ""
    #: Checks beyond the options model (e.g. the tools named exist); raise ValueError with a message.
    check: Callable[[TaskSpec], None] | None = field(default=None)


#: name → module holding ``KIND`` (or ``module:ATTR``).
KINDS: dict[str, str] = {
    "chat": "conclave.agents.chat",
    "agent": "conclave.agents.loop",
    "ensemble": "conclave.agents.ensemble.kind",
    "ensemble_search": "conclave.agents.ensemble.search",
    "research": "conclave.agents.research",
}


class SpecError(ValueError):
    """A task spec its kind rejects; ``field`` names where."""

    def __init__(self, field: str, message: str, value: Any = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.value = value


def register_kinds(extra: dict[str, str]) -> None:
    """Add user-defined kinds (name → module exposing ``KIND``), e.g. from ``Settings.kinds``."""
    KINDS.update(extra)


def get_kind(name: str) -> RunKind:
    try:
        module = KINDS[name]
    except KeyError:
        raise SpecError("kind", f"unknown run kind {name!r}; known kinds: {', '.join(sorted(KINDS))}", name) from None
    module, _, attr = module.partition(":")
    kind: RunKind = getattr(importlib.import_module(module), attr or "KIND")
    return kind


def validate_spec(spec: TaskSpec, models: list[str] | None = None) -> BaseModel:
    """Validate what the schema alone cannot: the kind, its options, the model name."""
    kind = get_kind(spec.kind)
    try:
        opts = kind.options.model_validate(spec.options)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise SpecError(f"options.{loc}" if loc else "options", err["msg"], err.get("input")) from None
    if models is not None and spec.model and not spec.model.startswith("ensemble/") and spec.model not in models:
        raise SpecError(
            "model", f"unknown model {spec.model!r}; served models: {', '.join(models) or 'none'}", spec.model
        )
    if kind.check is not None:
        try:
            kind.check(spec)
        except ValueError as e:
            raise SpecError(getattr(e, "field", "spec"), str(e)) from None
    return opts
