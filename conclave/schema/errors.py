"""One way to turn a pydantic ``ValidationError`` into messages that name the field, the value and what
was expected — used by the HTTP API, the OpenAI endpoint, the CLI, config files and tool arguments alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import ValidationError

from conclave.schema.base import StrictModel

__all__ = ["FieldProblem", "field_problems", "format_problems", "format_validation_error", "short_value"]

PathStyle = Literal["dotted", "openai"]
"""``dotted``: ``messages.0.role`` (our API, config files); ``openai``: ``messages[0].role`` (OpenAI's
``param`` spelling)."""


class FieldProblem(StrictModel):
    """One thing wrong with one field of an input."""

    field: str
    message: str
    value: Any = None


def short_value(value: Any) -> Any:
    """The offending value as a short, JSON-safe echo (never the bytes of a 20 MB body)."""
    if isinstance(value, dict | list) or value is None:
        return None
    if isinstance(value, bytes):
        value = value[:80].decode("utf-8", "replace")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str) and len(value) > 120:
        return value[:117] + "..."
    if isinstance(value, str | int | float | bool):
        return value
    return repr(value)[:120]


def _path(loc: Sequence[int | str], style: PathStyle) -> str:
    # Union members add their type name to the path (``str``, ``list[TextPart]``, ``function-after[...]``).
    parts = [p for p in loc if isinstance(p, int) or not any(c in str(p) for c in "[]-")]
    if style == "dotted":
        return ".".join(str(p) for p in parts)
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def field_problems(
    err: ValidationError | Sequence[Mapping[str, Any]], *, prefix: str = "", style: PathStyle = "dotted"
) -> list[FieldProblem]:
    """Every problem of ``err`` (a ``ValidationError`` or FastAPI's list of error dicts), with the field
    path (prefixed, e.g. ``options.``; FastAPI's ``body`` location dropped) and the value given."""
    errors = err.errors(include_url=False) if isinstance(err, ValidationError) else err
    out = []
    for e in errors:
        loc = [p for p in e.get("loc", ()) if p != "body"]
        path = _path(loc, style)
        field = f"{prefix}{path}" if path else (prefix.rstrip(".") or "body")
        msg = str(e.get("msg", "invalid"))
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if e.get("type") == "extra_forbidden":
            msg = f"unknown field {str(loc[-1])!r}" if loc else "unknown field"
        value = None if e.get("type") == "missing" else short_value(e.get("input"))
        out.append(FieldProblem(field=field, message=msg, value=value))
    return out


def format_problems(problems: Sequence[FieldProblem], source: str | None = None) -> str:
    """One line per problem: ``source: field: message (got value)``."""
    lines = []
    for p in problems:
        got = "" if p.value is None else f" (got {p.value!r})"
        lines.append(f"{source + ': ' if source else ''}{p.field}: {p.message}{got}")
    return "\n".join(lines)


def format_validation_error(err: ValidationError, source: str | None = None, *, prefix: str = "") -> str:
    """``format_problems(field_problems(err))``: the text form, for config files, the CLI and tool results."""
    return format_problems(field_problems(err, prefix=prefix), source)
