"""Problems with a checker, and what a set of metered calls spent.

A ``Problem`` is one task with a way to tell a good answer: an ``expected`` answer (compared by
exact match after answer extraction and normalisation, as the voter extracts answers) or a Python
checker. Checkers are plain callables ``(response, problem) -> bool | float``; to use one from a
config (JSON, YAML, an inline ensemble in a task) register it under a name first
(``register_checker``), so a config can only name code the deployment chose to expose.

``Spend`` is what calls cost as the ledger committed it: ``recording(meter, spend)`` gives a meter
whose commit ops are summed into ``spend`` on their way to the run's commit sink, so the figures
are the ledger's own (engine-reported tokens, priced in pico-dollars), also inside a durable step
whose ledger ops commit later.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from conclave.core.context import Metered
from conclave.core.money import from_pico
from conclave.schema import ChatMessageIn
from conclave.schema.chat import ChatMessage

from . import parsing

__all__ = [
    "Checker",
    "CheckerError",
    "Problem",
    "Spend",
    "checker_names",
    "exact_match",
    "get_checker",
    "make_checker",
    "recording",
    "register_checker",
]

#: A checker: the response and its problem → pass (True/False) or a score in [0, 1].
Checker = Callable[[str, "Problem"], bool | float]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")
_REGISTRY: dict[str, Checker] = {}


class CheckerError(ValueError):
    """A checker that cannot be used (unknown name, missing expected answer, bad return value)."""


class Problem(BaseModel):
    """One task of a problem set or dev set."""

    model_config = ConfigDict(extra="forbid")

    input: str | list[ChatMessageIn] = Field(description="The task text, or chat messages ending with the user's.")
    expected: str | None = Field(default=None, max_length=100_000, description="The reference answer, if any.")
    id: str | None = Field(default=None, max_length=256, description="A label for reports.")
    data: dict[str, Any] = Field(default_factory=dict, description="Anything a Python checker needs (tests...).")

    @field_validator("input")
    @classmethod
    def _not_empty(cls, v: str | list[ChatMessageIn]) -> str | list[ChatMessageIn]:
        if isinstance(v, str) and not v.strip():
            raise ValueError("input must not be empty")
        if isinstance(v, list):
            if not v:
                raise ValueError("input must hold at least one message")
            if v[-1].role != "user":
                raise ValueError("the last message of input must be the user's")
        return v

    def messages(self) -> list[ChatMessage]:
        if isinstance(self.input, str):
            return [ChatMessage(role="user", content=self.input)]
        return [ChatMessage(role=m.role, content=m.content) for m in self.input]

    def text(self) -> str:
        """The last user message."""
        return self.input if isinstance(self.input, str) else self.input[-1].content


def exact_match(answer_pattern: str | None = None) -> Checker:
    """Passes when the response's extracted answer equals the expected one's (both normalised as
    the voter does: ``\\boxed{}``, 'answer is …', last number, else the whole text; case,
    whitespace, surrounding punctuation and thousands separators ignored). ``answer_pattern``, a
    regex whose first group is the answer, applies to the response."""
    if answer_pattern is not None:
        re.compile(answer_pattern)

    def check(response: str, problem: Problem) -> bool:
        if problem.expected is None:
            raise CheckerError(f"problem {problem.id or problem.text()[:40]!r} has no expected answer for exact match")
        return parsing.extract_answer(response, answer_pattern) == parsing.extract_answer(problem.expected)

    check.__name__ = "exact_match"
    return check


def register_checker(name: str, fn: Checker) -> None:
    """Make ``fn`` available to configs as ``checker: <name>``. Re-registering a name replaces it."""
    if not _NAME.match(name):
        raise CheckerError(f"invalid checker name {name!r}: letters, digits, '_', '.', '-'; a letter first")
    if name == "exact":
        raise CheckerError("'exact' is the built-in exact-match checker; choose another name")
    if not callable(fn):
        raise CheckerError(f"checker {name!r} is not callable")
    _REGISTRY[name] = fn


def checker_names() -> list[str]:
    return ["exact", *sorted(_REGISTRY)]


def get_checker(name: str, answer_pattern: str | None = None) -> Checker:
    """A checker by name: ``exact`` (built in) or a registered one."""
    if name == "exact":
        return exact_match(answer_pattern)
    try:
        return _REGISTRY[name]
    except KeyError:
        raise CheckerError(f"unknown checker {name!r}; known checkers: {', '.join(checker_names())}") from None


def make_checker(checker: str | Checker | None, answer_pattern: str | None = None) -> Checker:
    """``None`` or ``"exact"`` → exact match; another string → a registered checker; a callable as is."""
    if checker is None:
        return exact_match(answer_pattern)
    if isinstance(checker, str):
        return get_checker(checker, answer_pattern)
    if inspect.iscoroutinefunction(checker):
        raise CheckerError("a checker is a plain function (response, problem) -> bool | float, not async")
    return checker


def run_checker(checker: Checker, response: str, problem: Problem) -> float:
    """The checker's verdict as a score in [0, 1] (True → 1.0); anything else is a ``CheckerError``."""
    got = checker(response, problem)
    if isinstance(got, bool):
        return 1.0 if got else 0.0
    if isinstance(got, int | float) and 0.0 <= float(got) <= 1.0:
        return float(got)
    name = getattr(checker, "__name__", repr(checker))
    raise CheckerError(f"checker {name} returned {got!r}; a checker returns a bool or a score in [0, 1]")


class Spend(BaseModel):
    """Usage and price of a set of calls, as committed to the ledger."""

    model_config = ConfigDict(extra="forbid")

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    model_calls: int = 0
    usd_pico: int = Field(default=0, description="Price in pico-dollars (1e-12 USD), exact as the ledger sums it.")

    @property
    def usd(self) -> float:
        return from_pico(self.usd_pico)

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add_used(self, used: Mapping[str, Any]) -> None:
        for limit, value in used.items():
            field = "usd_pico" if limit == "usd" else limit
            if field in type(self).model_fields:
                setattr(self, field, getattr(self, field) + int(value))

    def __iadd__(self, other: Spend) -> Spend:
        for name in type(self).model_fields:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self


def recording(meter: Metered, spend: Spend) -> Metered:
    """A meter like ``meter`` (same ledger, scope, caps) whose committed usage is also summed into
    ``spend``; its children record too."""
    return meter.observed(lambda op: spend.add_used(op.used))
