"""The components of a layer and the calls they make.

Every component reads the previous layer's state (candidates, their critiques, unit tests) and
returns what it adds; the executor merges the outputs of a layer's components in component order, so
the result never depends on which call finished first. All model calls go through a ``Meter``.

How each component degrades when a model's output cannot be parsed after its retries (it is told
what was wrong and asked again, each retry metered like any call):

- critic: the candidates pass on without critiques from it;
- ranker: a partial ranking is completed with the unranked candidates in their original order; no
  ranking at all keeps every candidate in its original order, none dropped (``top_k`` is not applied
  without a judgment);
- verifier: with ``first_k`` and at least that many verified, the first ``first_k`` verified are
  kept; otherwise the verified ones, then those without a readable verdict (unjudged, never
  dropped); when nothing is verified or unjudged, all are kept (as Archon does);
- unit-test generator: no unit tests (evaluators then pass candidates on unchanged);
- unit-test evaluator: a candidate whose verdicts cannot be read ranks after all scored ones;
- voter: makes no calls; a response with no recognisable answer votes with its whole normalised text;
- checker: makes no calls; keeps the candidates that pass, all of them (score 0) when none does.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from conclave.core.context import Metered
from conclave.schema.chat import ChatChoice, ChatMessage, ChatRequest

from . import parsing, prompts
from .config import MAX_N, ComponentSpec
from .scoring import Problem, make_checker, run_checker

__all__ = [
    "Call",
    "Candidate",
    "ComponentOutput",
    "EnsembleState",
    "run_component",
    "run_generators",
    "stable_seed",
]

T = TypeVar("T")


class _Rec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Candidate(_Rec):
    """A response in the ensemble's pool. ``origin`` (``L<layer>.c<component>.s<sample>``) is unique
    and ties a critique to its candidate across layers."""

    text: str
    origin: str
    critique: str | None = None
    score: float | None = Field(default=None, description="Votes share, tests passed, or None.")


class EnsembleState(_Rec):
    """What flows from one layer to the next."""

    candidates: list[Candidate] = Field(default_factory=list)
    unit_tests: list[str] = Field(default_factory=list)


def stable_seed(*parts: object) -> int:
    """A seed derived from its parts (run seed, layer, component, attempt), the same on every run."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return int(digest[:8], 16) & 0x7FFFFFFF


@dataclass
class Call:
    """Metered calls on behalf of one component (or one batch of same-prompt generators)."""

    meter: Metered
    model: str
    spec: ComponentSpec
    seed: int
    max_tokens_cap: int | None = None
    sequential: bool = False
    inflight: list[int] = field(default_factory=lambda: [0])

    @property
    def max_tokens(self) -> int:
        cap = self.max_tokens_cap
        return min(self.spec.max_tokens, cap) if cap else self.spec.max_tokens

    def _messages(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        if self.spec.no_system:
            return [m for m in messages if m.role not in ("system", "developer")] or list(messages[-1:])
        return list(messages)

    async def one(self, messages: Sequence[ChatMessage], *, n: int = 1, salt: object = 0) -> list[ChatChoice]:
        request = ChatRequest(
            model=self.model,
            messages=self._messages(messages),
            n=n,
            temperature=self.spec.temperature,
            max_tokens=self.max_tokens,
            seed=stable_seed(self.seed, salt),
        )
        response = await self.meter.chat(request, model=self.model)
        return list(response.choices)

    async def samples(self, messages: Sequence[ChatMessage], count: int, *, salt: object = 0) -> list[str]:
        """``count`` completions of one prompt: one request with ``n`` (chunks of at most 128, sent
        together) so the engine can batch them; one request per sample in sequential mode."""
        if count <= 0:
            return []
        if self.sequential:
            out: list[str] = []
            for k in range(count):
                out += [c.message.content or "" for c in await self.one(messages, salt=(salt, "s", k))]
            return out
        sizes = [min(MAX_N, count - start) for start in range(0, count, MAX_N)]
        chunks = await gather_all(
            [self.one(messages, n=size, salt=(salt, k)) for k, size in enumerate(sizes)], sequential=False
        )
        return [c.message.content or "" for chunk in chunks for c in chunk]

    async def first_finish(self, messages: Sequence[ChatMessage], count: int, *, salt: object = 0) -> str:
        """Start ``count`` calls at once; return the first to complete and cancel the rest, whose
        reservations the meter then releases, so they stop counting against the budget. When several
        complete in the same instant, the lowest index wins."""
        tasks = [asyncio.ensure_future(self.one(messages, salt=(salt, "ff", k))) for k in range(count)]
        pending: set[asyncio.Future[list[ChatChoice]]] = set(tasks)
        first_error: BaseException | None = None
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                winners = [t for t in tasks if t in done and not t.cancelled() and t.exception() is None]
                for t in tasks:
                    if t in done and not t.cancelled() and t.exception() is not None and first_error is None:
                        first_error = t.exception()
                if winners:
                    return winners[0].result()[0].message.content or ""
            assert first_error is not None
            raise first_error
        finally:
            for loser in pending:
                loser.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    async def ask(
        self,
        messages: list[ChatMessage],
        parse: Callable[[str], T],
        *,
        expected: str,
        retries: int,
        salt: object = 0,
    ) -> tuple[T | None, str, int]:
        """One judged call, re-asked up to ``retries`` times with the parse error and the format
        expected. Returns (parsed value or None, last raw text, attempts)."""
        convo = list(messages)
        text = ""
        for attempt in range(retries + 1):
            choices = await self.one(convo, salt=(salt, "try", attempt))
            text = choices[0].message.content or ""
            try:
                return parse(text), text, attempt + 1
            except parsing.ParseError as e:
                convo = [
                    *convo,
                    ChatMessage(role="assistant", content=text),
                    ChatMessage(role="user", content=prompts.retry_note(str(e), expected)),
                ]
        return None, text, retries + 1


async def gather_all(aws: Sequence[Awaitable[T]], *, sequential: bool) -> list[T]:
    """Run awaitables concurrently (or one after another) and wait for all of them, even when one
    fails, so every started call commits its usage; then raise the first error."""
    if sequential:
        return [await a for a in aws]
    results = await asyncio.gather(*aws, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return list(results)  # type: ignore[arg-type]


@dataclass
class ComponentOutput:
    """What one component adds to its layer. ``candidates`` None = it produces none (critic, unit-test
    generator); ``critiques`` maps candidate origins to critiques."""

    candidates: list[Candidate] | None = None
    critiques: dict[str, str] = field(default_factory=dict)
    unit_tests: list[str] | None = None
    degraded: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Env:
    """What a component sees: the conversation, the previous state and how to call."""

    layer: int
    index: int
    messages: list[ChatMessage]
    query: str  # the last user message, with unit tests appended once they exist
    bare_query: str  # without unit tests
    prev: EnsembleState
    retries: int
    sequential: bool
    problem: Problem | None = None  # the task with its expected answer, when the caller knows it

    def origin(self, sample: int) -> str:
        return f"L{self.layer}.c{self.index}.s{sample}"

    def judge_messages(self, system: str, prompt: str) -> list[ChatMessage]:
        """Archon's shape: a role system message, the earlier turns of the conversation, the prompt."""
        earlier = [m for m in self.messages[:-1] if m.role not in ("system", "developer")]
        return [ChatMessage(role="system", content=system), *earlier, ChatMessage(role="user", content=prompt)]

    def conversation(self) -> list[ChatMessage]:
        """The user's conversation, its last message carrying the unit tests when they exist."""
        msgs = list(self.messages)
        if self.query != self.bare_query:
            last = msgs[-1]
            msgs[-1] = ChatMessage(role=last.role, content=self.query)
        return msgs


def _critiques_shown(spec: ComponentSpec, cands: Sequence[Candidate]) -> list[str | None] | None:
    if spec.use_critiques is False or not any(c.critique for c in cands):
        return None
    return [c.critique for c in cands]


async def run_generators(
    env_of: Callable[[int], Env], members: Sequence[tuple[int, ComponentSpec, int]], call: Call
) -> dict[int, ComponentOutput]:
    """Generators of one layer that share model and sampling settings: all their samples go out as
    one request with ``n`` (the same prompt), then are handed back in component order."""
    env = env_of(members[0][0])
    total = sum(s for _, _, s in members)
    texts = await call.samples(env.conversation(), total, salt=("gen", env.layer, members[0][0]))
    out: dict[int, ComponentOutput] = {}
    pos = 0
    for j, _, s in members:
        mine = texts[pos : pos + s]
        pos += s
        e = env_of(j)
        out[j] = ComponentOutput(candidates=[Candidate(text=t, origin=e.origin(k)) for k, t in enumerate(mine)])
    return out


async def run_component(env: Env, spec: ComponentSpec, call: Call | None, samples: int) -> ComponentOutput:
    """Run one component other than a batched generator. ``call`` is None only for the voter."""
    cands = env.prev.candidates
    kind = spec.type
    if kind == "generator":
        assert call is not None
        if spec.first_finish:
            text = await call.first_finish(env.conversation(), samples, salt=("ff", env.layer, env.index))
            return ComponentOutput(candidates=[Candidate(text=text, origin=env.origin(0))])
        texts = await call.samples(env.conversation(), samples, salt=("gen", env.layer, env.index))
        return ComponentOutput(candidates=[Candidate(text=t, origin=env.origin(k)) for k, t in enumerate(texts)])
    if kind == "unit_test_generator":
        assert call is not None
        return await _unit_test_generator(env, spec, call)
    if not cands:
        return ComponentOutput(degraded="no candidates from the previous layer; nothing to do")
    if kind == "voter":
        return _voter(env, spec)
    if kind == "checker":
        return _checker(env, spec)
    assert call is not None
    if kind == "critic":
        return await _critic(env, spec, call)
    if kind == "ranker":
        return await _ranker(env, spec, call)
    if kind == "fuser":
        return await _fuser(env, spec, call, samples)
    if kind == "verifier":
        return await _verifier(env, spec, call)
    if kind == "unit_test_evaluator":
        return await _evaluator(env, spec, call)
    raise ValueError(f"unknown component type {kind!r}")  # pragma: no cover - the config forbids it


async def _critic(env: Env, spec: ComponentSpec, call: Call) -> ComponentOutput:
    cands = env.prev.candidates
    msgs = env.judge_messages(
        "You are a critical evaluator.", prompts.critic_prompt(env.query, [c.text for c in cands])
    )
    got, _, attempts = await call.ask(
        msgs,
        lambda t: parsing.parse_critiques(t, len(cands)),
        expected="[1] Strengths: ... Weaknesses: ... then [2] ... for every response",
        retries=env.retries,
        salt=("critic", env.layer, env.index),
    )
    if got is None:
        return ComponentOutput(degraded=f"critiques unreadable after {attempts} attempts; none attached")
    return ComponentOutput(critiques={c.origin: g for c, g in zip(cands, got, strict=True)})


async def _ranker(env: Env, spec: ComponentSpec, call: Call) -> ComponentOutput:
    cands = env.prev.candidates
    if len(cands) == 1:
        return ComponentOutput(candidates=list(cands), detail={"ranking": [0]})
    shown = _critiques_shown(spec, cands)
    msgs = env.judge_messages(
        "You rank answers by quality.", prompts.ranker_prompt(env.query, [c.text for c in cands], shown)
    )
    got, _, attempts = await call.ask(
        msgs,
        lambda t: parsing.parse_ranking(t, len(cands)),
        expected="a first line 'Answer: [2] > [1] > [3]' naming every response",
        retries=env.retries,
        salt=("ranker", env.layer, env.index),
    )
    if got is None:
        return ComponentOutput(
            candidates=list(cands),
            degraded=f"ranking unreadable after {attempts} attempts; all candidates kept in their order",
        )
    order, complete = got
    kept = [cands[i] for i in order][: spec.top_k or len(cands)]
    return ComponentOutput(
        candidates=kept,
        degraded=None if complete else "partial ranking completed with the unranked candidates in order",
        detail={"ranking": order},
    )


async def _fuser(env: Env, spec: ComponentSpec, call: Call, samples: int) -> ComponentOutput:
    cands = env.prev.candidates
    shown = _critiques_shown(spec, cands)
    prompt = prompts.fuser_prompt(env.query, [c.text for c in cands], shown, length_control=spec.length_control)
    msgs = env.judge_messages("You combine several answers into one better answer.", prompt)
    texts = await call.samples(msgs, samples, salt=("fuser", env.layer, env.index))
    return ComponentOutput(candidates=[Candidate(text=t, origin=env.origin(k)) for k, t in enumerate(texts)])


async def _verifier(env: Env, spec: ComponentSpec, call: Call) -> ComponentOutput:
    cands = env.prev.candidates

    async def check(k: int, cand: Candidate) -> bool | None:
        r_msgs = env.judge_messages(
            "You reason about whether answers are correct.", prompts.reasoning_prompt(env.query, cand.text)
        )
        reasoning = (await call.one(r_msgs, salt=("reason", env.layer, env.index, k)))[0].message.content or ""
        v_msgs = env.judge_messages(
            "You judge whether answers are correct.", prompts.verdict_prompt(env.query, cand.text, reasoning)
        )
        verdict, _, _ = await call.ask(
            v_msgs,
            parsing.parse_verdict,
            expected="an explanation ending with [Correct] or [Incorrect]",
            retries=env.retries,
            salt=("verdict", env.layer, env.index, k),
        )
        return verdict

    verdicts = await gather_all([check(k, c) for k, c in enumerate(cands)], sequential=env.sequential)
    passed = [c for c, v in zip(cands, verdicts, strict=True) if v is True]
    unjudged = [c for c, v in zip(cands, verdicts, strict=True) if v is None]
    degraded = f"{len(unjudged)} verdict(s) unreadable; those candidates kept after the verified" if unjudged else None
    if spec.first_k and len(passed) >= spec.first_k:
        kept, degraded = passed[: spec.first_k], None
    else:
        kept = passed + unjudged
    if not kept:
        kept, degraded = list(cands), "no candidate passed verification; all kept"
    return ComponentOutput(candidates=kept, degraded=degraded, detail={"verdicts": verdicts})


async def _unit_test_generator(env: Env, spec: ComponentSpec, call: Call) -> ComponentOutput:
    msgs = env.judge_messages(
        "You write unit tests for answers.", prompts.unit_tests_prompt(env.bare_query, spec.unit_test_cap)
    )
    got, _, attempts = await call.ask(
        msgs,
        lambda t: parsing.parse_unit_tests(t, spec.unit_test_cap),
        expected="only a list of strings, e.g. ['The answer states X', 'The answer mentions Y']",
        retries=env.retries,
        salt=("tests", env.layer, env.index),
    )
    if got is None:
        return ComponentOutput(unit_tests=[], degraded=f"unit tests unreadable after {attempts} attempts; none")
    return ComponentOutput(unit_tests=got, detail={"unit_tests": len(got)})


async def _evaluator(env: Env, spec: ComponentSpec, call: Call) -> ComponentOutput:
    cands = env.prev.candidates
    tests = env.prev.unit_tests
    if not tests:
        return ComponentOutput(candidates=list(cands), degraded="no unit tests to apply; candidates kept")
    query = env.bare_query if spec.remove_unit_tests_from_prompt else env.query

    async def score(k: int, cand: Candidate) -> int | None:
        msgs = env.judge_messages("You apply unit tests to answers.", prompts.evaluator_prompt(query, cand.text, tests))
        got, _, _ = await call.ask(
            msgs,
            lambda t: parsing.parse_test_verdicts(t, len(tests)),
            expected="one line per test: 'Unit Test #1: [Passed]' or '[Failed]'",
            retries=env.retries,
            salt=("evaluate", env.layer, env.index, k),
        )
        return None if got is None else sum(got)

    scores = await gather_all([score(k, c) for k, c in enumerate(cands)], sequential=env.sequential)
    scored = [
        c.model_copy(update={"score": float(s) if s is not None else None}) for c, s in zip(cands, scores, strict=True)
    ]
    unread = sum(s is None for s in scores)
    degraded = f"{unread} evaluation(s) unreadable; ranked last" if unread else None
    all_pass = [c for c, s in zip(scored, scores, strict=True) if s == len(tests)]
    if spec.first_k and len(all_pass) >= spec.first_k:
        kept = all_pass[: spec.first_k]
    else:
        # Most tests passed first; the sort is stable, so equal scores keep the candidates' order.
        def passed(i: int) -> int:
            s = scores[i]
            return -1 if s is None else s

        ranked = sorted(range(len(scored)), key=passed, reverse=True)
        kept = [scored[i] for i in ranked][: spec.top_k or len(scored)]
    return ComponentOutput(candidates=kept, degraded=degraded, detail={"passed": scores, "tests": len(tests)})


def _voter(env: Env, spec: ComponentSpec) -> ComponentOutput:
    cands = env.prev.candidates
    answers = [parsing.extract_answer(c.text, spec.answer_pattern) for c in cands]
    winner, votes = parsing.majority(answers)
    share = votes / len(cands)
    kept = [c.model_copy(update={"score": share}) for c, a in zip(cands, answers, strict=True) if a == winner]
    tally: dict[str, int] = {}
    for a in answers:
        tally[a] = tally.get(a, 0) + 1
    return ComponentOutput(candidates=kept, detail={"answer": winner, "votes": votes, "of": len(cands), "tally": tally})


def checker_problem(env_problem: Problem | None, spec: ComponentSpec, query: str) -> Problem:
    """The problem a checker judges against: the run's (its expected answer wins over the config's)."""
    if env_problem is None:
        return Problem(input=query, expected=spec.expected)
    if env_problem.expected is None and spec.expected is not None:
        return env_problem.model_copy(update={"expected": spec.expected})
    return env_problem


def _checker(env: Env, spec: ComponentSpec) -> ComponentOutput:
    cands = env.prev.candidates
    check = make_checker(spec.checker, spec.answer_pattern)
    problem = checker_problem(env.problem, spec, env.bare_query)
    scores = [run_checker(check, c.text, problem) for c in cands]
    passed = [s >= 1.0 for s in scores]
    scored = [c.model_copy(update={"score": s}) for c, s in zip(cands, scores, strict=True)]
    kept = [c for c, ok in zip(scored, passed, strict=True) if ok]
    detail: dict[str, Any] = {"checker": spec.checker or "exact", "passed": passed, "solved": bool(kept)}
    if not kept:
        return ComponentOutput(candidates=scored, degraded="no candidate passed the checker; all kept", detail=detail)
    return ComponentOutput(candidates=kept, detail=detail)
