"""Run kinds: the pluggable bodies a run executes (``chat``, ``agent``, ``ensemble``, ``research``…).

A kind is a ``RunKind``: a name, an async body that takes the run's ``RunContext`` and returns an
``Outcome``, and the pydantic model of its ``options``. A submission is validated against its kind before
it is queued, so a bad spec is a 422 naming the field, never a failed run.

The registry lives here so that every layer can look a kind up; the built-in kinds are registered by
``conclave.agents.kinds``, and deployments add their own with ``Settings.kinds`` (name → module exposing
``KIND``), which are imported when they are registered — explicitly, at start-up.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from conclave.schema import RunStatus, StopReason, TaskSpec, field_problems

if TYPE_CHECKING:
    from .context import RunContext

__all__ = [
    "NoOptions",
    "Outcome",
    "RunKind",
    "SpecError",
    "get_kind",
    "known_kinds",
    "register_kind",
    "register_kind_modules",
    "validate_spec",
]


class NoOptions(BaseModel):
    """The options model of a kind that takes none: any option is an error."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class Outcome:
    """How a run body ended: its answer or report, a structured result, and the terminal status."""

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


class SpecError(ValueError):
    """A task spec its kind rejects; ``field`` names where, ``value`` echoes what was given."""

    def __init__(self, field: str, message: str, value: Any = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.value = value


_KINDS: dict[str, RunKind] = {}


def register_kind(kind: RunKind) -> RunKind:
    """Make ``kind`` available by its name (a later registration of the same name replaces it)."""
    _KINDS[kind.name] = kind
    return kind


def register_kind_modules(modules: Mapping[str, str]) -> None:
    """Register user-defined kinds: name → ``module`` (exposing ``KIND``) or ``module:ATTR``. A module that
    cannot be imported, or whose attribute is not a ``RunKind``, is an error naming it."""
    for name, ref in modules.items():
        module, _, attr = ref.partition(":")
        try:
            kind = getattr(importlib.import_module(module), attr or "KIND")
        except (ImportError, AttributeError) as e:
            raise SpecError("kinds", f"kind {name!r}: cannot load {ref!r}: {e}", ref) from None
        if not isinstance(kind, RunKind):
            raise SpecError("kinds", f"kind {name!r}: {ref!r} is not a RunKind", ref)
        _KINDS[name] = (
            kind if kind.name == name else RunKind(name, kind.run, kind.options, kind.description, kind.check)
        )


def known_kinds() -> list[str]:
    return sorted(_KINDS)


def get_kind(name: str) -> RunKind:
    try:
        return _KINDS[name]
    except KeyError:
        raise SpecError("kind", f"unknown run kind {name!r}; known kinds: {', '.join(known_kinds())}", name) from None


def validate_spec(spec: TaskSpec, models: list[str] | None = None) -> BaseModel:
    """Validate what the schema alone cannot: the kind, its options, the model name."""
    kind = get_kind(spec.kind)
    try:
        opts = kind.options.model_validate(spec.options)
    except ValidationError as e:
        p = field_problems(e, prefix="options.")[0]
        raise SpecError(p.field, p.message, p.value) from None
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
