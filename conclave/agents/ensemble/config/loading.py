"""Loading ensemble configs: JSON or YAML files, or dicts already parsed, validated into an ``EnsembleConfig``.

Every problem is reported at once, one line each, naming the file and the path in it
(``f.json: layers[2][0].tmperature: unknown field 'tmperature' (got 1)``); a file that is not JSON
or YAML is rejected naming its line and column. Configs that load may still carry warnings
(Archon's known misspelling, a judge in the first layer with nothing to judge), logged and returned.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from conclave.schema.errors import field_problems, format_problems

from .spec import ALIASES, NEEDS_CANDIDATES, EnsembleConfig

__all__ = ["ConfigFileError", "format_errors", "load_config", "load_file", "parse_config"]

log = logging.getLogger(__name__)


class ConfigFileError(ValueError):
    """A config that cannot be loaded; the message names the file and where in it."""


def _archon_path(field: str) -> str:
    """``layers[2].components[0].tmperature`` → ``layers[2][0].tmperature``: a layer's components are
    indexed directly, as in Archon's files; an error of the whole config is at ``(root)``."""
    return "(root)" if field == "body" else field.replace("].components[", "][")


def format_errors(err: ValidationError, source: str | None = None) -> str:
    """One line per problem, naming its path in the file: ``f.json: layers[2][0].tmperature: unknown field
    'tmperature' (got 1)`` — the project's one formatter (``schema.errors``), with Archon's paths."""
    problems = field_problems(err, style="openai")
    return format_problems([p.model_copy(update={"field": _archon_path(p.field)}) for p in problems], source)


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
                for wrong, right in ALIASES.items():
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
        if c.type in NEEDS_CANDIDATES:
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
