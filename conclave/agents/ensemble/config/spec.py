"""The schema of an ensemble config: Archon's JSON format as published, and Conclave's validated superset.

Archon describes an ensemble as ``{"name": ..., "layers": [...]}`` where each layer is a list of
components (``{"type": "generator", "model": ..., "model_type": ..., "temperature": ...,
"max_tokens": ..., "samples": ...}``), a single component object, or the older
``{"branches": n, "models": [...]}`` entry. Archon reads these dicts without a schema, so typos pass
silently (24 of its configs misspell ``length_contorl``). Here every field is declared: an unknown
field or component type is an error naming its path (``layers[2][0].tmperature``), the known
misspelling is accepted with a warning, and a file that is not JSON is rejected naming its line and
column.

Conclave's superset adds, all optional: ``description``; ``model_map`` (Archon model name → a model
Conclave serves) and ``default_model`` (for names the map does not cover); a ``voter`` component
(majority vote over extracted answers); ``first_finish`` on a generator; a per-layer ``budget``
(the layer shrinks its samples to fit); and ``strategy``, a shorthand that expands to layers
(best-of-N, self-consistency, first-finish).
"""

from __future__ import annotations

import re
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "ALIASES",
    "CALL_FREE",
    "COMPONENT_TYPES",
    "NEEDS_CANDIDATES",
    "PROVIDERS",
    "ComponentSpec",
    "ComponentType",
    "EnsembleConfig",
    "LayerBudget",
    "LayerSpec",
    "StrategySpec",
]

ComponentType = Literal[
    "generator",
    "critic",
    "ranker",
    "fuser",
    "verifier",
    "unit_test_generator",
    "unit_test_evaluator",
    "voter",
    "checker",
]
COMPONENT_TYPES: tuple[str, ...] = get_args(ComponentType)

#: ``model_type`` values Archon's configs use (``""`` = unspecified, as its PairRM rankers have),
#: plus ``conclave`` for a model Conclave serves under that very name.
PROVIDERS: tuple[str, ...] = (
    "Together_API",
    "OpenAI_API",
    "Anthropic_API",
    "Google_API",
    "Groq_API",
    "Bedrock_API",
    "vLLM",
    "tgi",
    "conclave",
    "",
)

#: Archon's misspelling, accepted with a warning.
ALIASES = {"length_contorl": "length_control"}

#: Components that read the previous layer's candidates and need at least one.
NEEDS_CANDIDATES = ("critic", "ranker", "fuser", "verifier", "unit_test_evaluator", "voter", "checker")

#: Components that make no model call.
CALL_FREE = ("voter", "checker")

_CHECKER_NAME = r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ComponentSpec(_Strict):
    """One component of a layer.

    Fields Archon accepts but whose effect Conclave does not reproduce are still declared, so that a
    config that uses them loads; each says what happens to it.
    """

    type: ComponentType = Field(description="What the component does.")
    model: str | None = Field(
        default=None, min_length=1, max_length=256, description="Model name (Archon's or a served one)."
    )
    model_type: str = Field(default="", description="Archon's provider label; checked, then only informative.")
    temperature: float = Field(default=0.7, ge=0, le=2)
    max_tokens: int = Field(default=2048, ge=1, le=1_000_000)
    samples: int = Field(default=1, ge=1, le=100_000, description="Completions this component draws.")
    top_k: int | None = Field(default=None, ge=1, description="Ranker/evaluator: candidates kept.")
    first_k: int | None = Field(default=None, ge=1, description="Verifier/evaluator: stop at the first k passing.")
    first_pass: bool | None = Field(default=None, description="Archon's older spelling of first_k=1.")
    use_critiques: bool | None = Field(
        default=None, description="Ranker/fuser: show critiques (None = when present, as Archon does)."
    )
    unit_test_cap: int | None = Field(default=None, ge=1, le=1000, description="Unit tests to generate.")
    remove_unit_tests_from_prompt: bool = Field(
        default=False, description="Evaluator: judge against the query without the unit tests appended."
    )
    length_control: bool = Field(default=False, description="Fuser: no longer than the longest candidate.")
    no_system: bool = Field(default=False, description="Drop system messages from this component's calls.")
    # Accepted for compatibility, without effect (Archon's own code ignores the last four too).
    ranker_batch_size: int | None = Field(default=None, ge=1, description="PairRM batch size; ignored.")
    ranker_config: dict[str, Any] | None = Field(default=None, description="PairRM settings; ignored.")
    checkpoint: str | None = Field(default=None, description="Unused by Archon; ignored.")
    batch_num: int | None = Field(default=None, ge=0, description="Unused by Archon; ignored.")
    top_k_generations: int | None = Field(default=None, ge=0, description="Unused by Archon; ignored.")
    fuse_generations_count: int | None = Field(default=None, ge=0, description="Unused by Archon; ignored.")
    # Conclave's additions.
    first_finish: bool = Field(
        default=False, description="Generator: start `samples` calls, keep the first to finish, cancel the rest."
    )
    answer_pattern: str | None = Field(
        default=None,
        max_length=500,
        description="Voter, checker: regex whose first group (or match) is the response's answer.",
    )
    checker: str | None = Field(
        default=None,
        pattern=_CHECKER_NAME,
        description="Checker: 'exact' (default) or the name of a registered Python checker.",
    )
    expected: str | None = Field(
        default=None,
        max_length=100_000,
        description="Checker: the expected answer when the run gives none (the run's problem wins).",
    )
    max_parse_retries: int | None = Field(
        default=None, ge=0, le=10, description="Judges: re-asks after an unparseable output."
    )
    name: str | None = Field(default=None, max_length=64, description="Label in events and cost breakdowns.")

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for wrong, right in ALIASES.items():
                if wrong in data:
                    data = dict(data)
                    value = data.pop(wrong)
                    if right in data and data[right] != value:
                        raise ValueError(f"both {wrong!r} (misspelt) and {right!r} are given, with different values")
                    data.setdefault(right, value)
        return data

    @field_validator("model_type")
    @classmethod
    def _known_provider(cls, v: str) -> str:
        if v not in PROVIDERS:
            known = ", ".join(repr(p) for p in PROVIDERS if p)
            raise ValueError(f"unknown provider model_type {v!r}; known: {known}")
        return v

    @field_validator("answer_pattern")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"answer_pattern is not a valid regex: {e}") from e
        return v

    @model_validator(mode="after")
    def _coherent(self) -> ComponentSpec:
        if self.type not in CALL_FREE and self.model is None:
            raise ValueError(f"a {self.type} needs a model")
        if self.first_finish and self.type != "generator":
            raise ValueError("first_finish applies to generators only")
        if self.answer_pattern is not None and self.type not in CALL_FREE:
            raise ValueError("answer_pattern applies to voters and checkers only")
        for name in ("checker", "expected"):
            if getattr(self, name) is not None and self.type != "checker":
                raise ValueError(f"{name} applies to checkers only")
        if self.first_k is None and self.first_pass:
            self.first_k = 1
        return self

    @property
    def label(self) -> str:
        return self.name or self.type

    def issues_call(self) -> bool:
        return self.type not in CALL_FREE


class LayerBudget(_Strict):
    """Caps for one layer; the layer draws fewer samples to fit (never fewer than one each)."""

    model_calls: int | None = Field(default=None, ge=1, description="Requests the layer may issue.")
    output_tokens: int | None = Field(default=None, ge=1, description="Worst-case output tokens of the layer.")


class LayerSpec(_Strict):
    """A layer: components that all read the previous layer's state and run concurrently."""

    components: list[ComponentSpec] = Field(min_length=1)
    budget: LayerBudget | None = None
    branches: int | None = Field(default=None, ge=1, description="Archon's older layer entry; ignored, as there.")

    @model_validator(mode="before")
    @classmethod
    def _shapes(cls, data: Any) -> Any:
        # Archon: a list of components, one component object, or {"branches": n, "models": [...]}.
        if isinstance(data, list):
            return {"components": data}
        if isinstance(data, dict):
            if "models" in data:
                rest = {k: v for k, v in data.items() if k != "models"}
                return {**rest, "components": data["models"]}
            if "type" in data:
                return {"components": [data]}
        return data


class StrategySpec(_Strict):
    """A test-time strategy on its own; expands to layers (see ``layers_of``).

    ``best_of_n``: n samples, then a ``ranker`` (keeps 1) or a ``verifier`` (keeps the first that
    passes). ``self_consistency``: n samples, then a voter. ``first_finish``: n samples started at
    once, the first to complete wins and the rest are cancelled. ``repeated_sampling``: n samples,
    then a checker (exact match against the expected answer, or a registered Python checker) that
    keeps the samples that pass, all of them when none does; its layer event reports whether any
    sample solved the problem (see ``coverage.repeated_sampling`` for a report over a problem set).
    """

    type: Literal["best_of_n", "self_consistency", "first_finish", "repeated_sampling"]
    model: str = Field(min_length=1, max_length=256)
    n: int = Field(default=5, ge=1, le=1000)
    temperature: float = Field(default=0.8, ge=0, le=2)
    max_tokens: int = Field(default=1024, ge=1, le=1_000_000)
    selector: Literal["ranker", "verifier"] = Field(default="ranker", description="best_of_n only.")
    judge_model: str | None = Field(default=None, description="Ranker/verifier model; default: `model`.")
    answer_pattern: str | None = Field(default=None, description="self_consistency, repeated_sampling.")
    checker: str | None = Field(default=None, pattern=_CHECKER_NAME, description="repeated_sampling only.")
    expected: str | None = Field(default=None, max_length=100_000, description="repeated_sampling only.")

    @model_validator(mode="after")
    def _fields_of_type(self) -> StrategySpec:
        if self.type != "repeated_sampling":
            for name in ("checker", "expected"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name} applies to repeated_sampling only")
        return self

    def layers_of(self) -> list[LayerSpec]:
        gen = ComponentSpec(
            type="generator",
            model=self.model,
            samples=self.n,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            first_finish=self.type == "first_finish",
        )
        layers = [LayerSpec(components=[gen])]
        judge = self.judge_model or self.model
        if self.type == "best_of_n":
            if self.selector == "ranker":
                sel = ComponentSpec(type="ranker", model=judge, top_k=1, temperature=0.0, max_tokens=256)
            else:
                sel = ComponentSpec(type="verifier", model=judge, first_k=1, temperature=0.0, max_tokens=512)
            layers.append(LayerSpec(components=[sel]))
        elif self.type == "self_consistency":
            layers.append(LayerSpec(components=[ComponentSpec(type="voter", answer_pattern=self.answer_pattern)]))
        elif self.type == "repeated_sampling":
            check = ComponentSpec(
                type="checker", checker=self.checker, expected=self.expected, answer_pattern=self.answer_pattern
            )
            layers.append(LayerSpec(components=[check]))
        return layers


class EnsembleConfig(_Strict):
    """An ensemble: Archon's ``name`` + ``layers``, or Conclave's ``strategy`` shorthand."""

    name: str = Field(min_length=1, max_length=256)
    layers: list[LayerSpec] = Field(default_factory=list)
    strategy: StrategySpec | None = None
    description: str | None = Field(default=None, max_length=10_000)
    model_map: dict[str, str] = Field(
        default_factory=dict, description="Model names in the config → models Conclave serves."
    )
    default_model: str | None = Field(default=None, description="Served model for names the map leaves out.")
    custom: bool = Field(default=False, description="Archon's flag for custom components (not supported).")

    @model_validator(mode="after")
    def _layers(self) -> EnsembleConfig:
        if self.custom:
            raise ValueError("custom components (custom: true) are not supported")
        if self.strategy is not None:
            if self.layers:
                raise ValueError("give either layers or strategy, not both")
            self.layers = self.strategy.layers_of()
            self.strategy = None
        if not self.layers:
            raise ValueError("an ensemble needs at least one layer (or a strategy)")
        return self

    def models(self) -> list[str]:
        """Every model name the config mentions, in order of first use."""
        seen: dict[str, None] = {}
        for layer in self.layers:
            for c in layer.components:
                if c.model:
                    seen.setdefault(c.model, None)
        return list(seen)
