"""Ensemble configurations: Archon's JSON format as published, and Conclave's validated superset.

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

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "COMPONENT_TYPES",
    "PROVIDERS",
    "ComponentSpec",
    "ConfigFileError",
    "EnsembleCheck",
    "EnsembleConfig",
    "LayerBudget",
    "LayerPlan",
    "LayerSpec",
    "Plan",
    "StrategySpec",
    "format_errors",
    "load_config",
    "load_file",
    "parse_config",
    "plan",
    "validate_file",
    "validate_paths",
]

log = logging.getLogger(__name__)

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
COMPONENT_TYPES: tuple[str, ...] = (
    "generator",
    "critic",
    "ranker",
    "fuser",
    "verifier",
    "unit_test_generator",
    "unit_test_evaluator",
    "voter",
    "checker",
)

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
_ALIASES = {"length_contorl": "length_control"}

#: Components that read the previous layer's candidates and need at least one.
_NEEDS_CANDIDATES = ("critic", "ranker", "fuser", "verifier", "unit_test_evaluator", "voter", "checker")

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
            for wrong, right in _ALIASES.items():
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


# ------------------------------------------------------------------------------------------------
# Errors and loading
# ------------------------------------------------------------------------------------------------


class ConfigFileError(ValueError):
    """A config that cannot be loaded; the message names the file and where in it."""


def _loc(loc: Sequence[int | str]) -> str:
    """``("layers", 2, "components", 0, "tmperature")`` → ``layers[2][0].tmperature``."""
    out = ""
    parts = list(loc)
    i = 0
    while i < len(parts):
        p = parts[i]
        if isinstance(p, int):
            out += f"[{p}]"
        elif p == "components" and i > 0 and isinstance(parts[i - 1], int) and i + 1 < len(parts):
            pass  # a layer's component list is indexed directly, as in Archon's files
        elif p in ("function-after[_coherent()]", "function-before[_aliases()]"):
            pass
        else:
            out += f".{p}" if out else str(p)
        i += 1
    return out or "(root)"


def format_errors(err: ValidationError, source: str | None = None) -> str:
    """One line per problem, naming its path in the file: ``f.json: layers[2][0].tmperature: unknown field``."""
    lines = []
    for e in err.errors():
        where = _loc(e["loc"])
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        else:
            msg = str(e["msg"]).removeprefix("Value error, ")
        got = e.get("input")
        got_s = (
            f" (got {got!r})" if isinstance(got, str | int | float | bool) and e["type"] != "extra_forbidden" else ""
        )
        head = "" if where == "(root)" and msg.startswith("layers[") else f"{where}: "
        lines.append(f"{source + ': ' if source else ''}{head}{msg}{got_s}")
    return "\n".join(lines)


def _warnings_of(raw: Any) -> list[str]:
    """Warnings about a raw config that still loads (today: Archon's known misspelling)."""
    out: list[str] = []
    layers = raw.get("layers") if isinstance(raw, dict) else None
    if not isinstance(layers, list):
        return out
    for i, layer in enumerate(layers):
        comps: Any = layer
        if isinstance(layer, dict):
            comps = layer.get("models", layer.get("components", [layer]))
        if not isinstance(comps, list):
            continue
        for j, c in enumerate(comps):
            if isinstance(c, dict):
                for wrong, right in _ALIASES.items():
                    if wrong in c:
                        out.append(f"layers[{i}][{j}].{wrong}: misspelling of {right!r}, read as {right}")
    return out


def parse_config(raw: Any, source: str | None = None) -> tuple[EnsembleConfig, list[str]]:
    """Validate a config already parsed from JSON/YAML (or built in Python). Returns the config and
    its warnings; raises ``ConfigFileError`` with one line per problem."""
    if not isinstance(raw, dict):
        raise ConfigFileError(
            f"{source + ': ' if source else ''}an ensemble config is a JSON object, got {type(raw).__name__}"
        )
    try:
        cfg = EnsembleConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigFileError(format_errors(e, source)) from None
    warnings = _warnings_of(raw)
    for j, c in enumerate(cfg.layers[0].components):
        if c.type in _NEEDS_CANDIDATES:
            warnings.append(f"layers[0][{j}]: a {c.type} in the first layer has no candidates to read; it does nothing")
    for w in warnings:
        log.warning("%s: %s", source or cfg.name, w)
    return cfg, warnings


def _read(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigFileError(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigFileError(f"{path}: not UTF-8 text: {e}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            raise ConfigFileError(f"{path}: invalid YAML{where}: {getattr(e, 'problem', e)}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigFileError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None


def load_file(path: str | Path) -> tuple[EnsembleConfig, list[str]]:
    """Load and validate one config file (JSON, or YAML by suffix)."""
    p = Path(path)
    return parse_config(_read(p), str(p))


def load_config(path: str | Path) -> EnsembleConfig:
    return load_file(path)[0]


# ------------------------------------------------------------------------------------------------
# Static plan: model calls and critical-path rounds
# ------------------------------------------------------------------------------------------------


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


# ------------------------------------------------------------------------------------------------
# Validation of files and folders
# ------------------------------------------------------------------------------------------------


class EnsembleCheck(BaseModel):
    """The verdict on one config file (what ``conclave ensemble validate`` prints a line for)."""

    model_config = ConfigDict(extra="forbid")

    path: str
    ok: bool
    error: str | None = None
    name: str | None = None
    warnings: list[str] = Field(default_factory=list)
    layers: int = 0
    total_model_calls: int = Field(default=0, description="Completions drawn; Archon makes each a call in turn.")
    requests: int = Field(default=0, description="Requests Conclave sends (same-prompt samples share one).")
    critical_path_rounds: int = Field(default=0, description="Calls one after another when layers run concurrently.")


def validate_file(path: str | Path) -> EnsembleCheck:
    """Load one file and report; never raises for a bad config."""
    p = Path(path)
    try:
        cfg, warnings = load_file(p)
    except ConfigFileError as e:
        return EnsembleCheck(path=str(p), ok=False, error=str(e))
    pl = plan(cfg)
    return EnsembleCheck(
        path=str(p),
        ok=True,
        name=cfg.name,
        warnings=warnings,
        layers=len(cfg.layers),
        total_model_calls=pl.total_model_calls,
        requests=pl.total_requests,
        critical_path_rounds=pl.critical_path_rounds,
    )


_SUFFIXES = (".json", ".yaml", ".yml")


def validate_paths(paths: Iterable[str | Path]) -> list[EnsembleCheck]:
    """Validate files and folders (recursed for ``.json``/``.yaml``/``.yml``), in sorted order."""
    out: list[EnsembleCheck] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in _SUFFIXES)
            out += [validate_file(f) for f in files]
        elif p.exists():
            out.append(validate_file(p))
        else:
            out.append(EnsembleCheck(path=str(p), ok=False, error=f"{p}: no such file or folder"))
    return out
