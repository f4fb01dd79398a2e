"""How a search scores a candidate's answer to a dev example: exact match, a Python checker, or an LLM judge.

Exact match and checkers make no call. The judge is a model asked for a verdict (the reference
answer given as its reasoning, when there is one) through the candidate's meter, so its calls are
part of the candidate's cost; a verdict that stays unreadable after ``max_parse_retries`` re-asks
scores 0 and is counted as unjudged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from conclave.core.context import Metered
from conclave.schema.chat import ChatMessage, ChatRequest

from .. import parsing, prompts
from ..components import stable_seed
from ..executor import ModelResolver
from ..scoring import Checker, CheckerError, Problem, make_checker, run_checker

__all__ = ["Judge", "Scorer", "ScorerSpec", "scorer_of"]


class ScorerSpec(BaseModel):
    """How an answer is scored: ``exact`` match with ``expected``, a registered Python ``checker``,
    or an LLM ``judge`` (``model``; every judgment a metered call)."""

    model_config = ConfigDict(extra="forbid")

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


class Judge:
    """An LLM judge through the meter: the verdict prompt with the reference answer as reasoning."""

    def __init__(self, spec: ScorerSpec, resolver: ModelResolver) -> None:
        assert spec.model is not None
        self.spec = spec
        self.model = resolver.resolve(spec.model, "scorer.model: ")

    async def score(self, meter: Metered, problem: Problem, answer: str, seed: int) -> float | None:
        """1.0 or 0.0 by the verdict; None when no readable verdict came back."""
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


@dataclass
class Scorer:
    """A resolved scorer: a checker (no call) or a judge (metered calls)."""

    check: Checker | None = None
    judge: Judge | None = None
    exact: bool = False

    async def score(self, meter: Metered, problem: Problem, answer: str, seed: int) -> tuple[float, bool]:
        """(score in [0, 1], whether the judge's verdict stayed unreadable)."""
        if self.judge is not None:
            got = await self.judge.score(meter.child("judge", stage="search/judge"), problem, answer, seed)
            return (0.0, True) if got is None else (got, False)
        assert self.check is not None
        return run_checker(self.check, answer, problem), False


def scorer_of(
    scorer: ScorerSpec | Mapping[str, Any] | str | Checker, resolver: ModelResolver, problems: list[Problem]
) -> Scorer:
    """``"exact"``, a registered checker's name, a callable ``(response, problem) -> bool | float``, or
    a ``ScorerSpec`` (or its dict); exact match needs every dev example's expected answer."""
    out: Scorer
    if isinstance(scorer, str) or callable(scorer):
        out = Scorer(check=make_checker(scorer), exact=scorer == "exact")
    else:
        spec = scorer if isinstance(scorer, ScorerSpec) else ScorerSpec.model_validate(scorer)
        if spec.type == "judge":
            out = Scorer(judge=Judge(spec, resolver))
        else:
            out = Scorer(check=make_checker(spec.name or "exact", spec.answer_pattern), exact=spec.type == "exact")
    missing = [i for i, p in enumerate(problems) if p.expected is None]
    if out.exact and missing:
        raise CheckerError(f"exact-match scoring needs expected answers; dev examples {missing} have none")
    return out
