"""``EnsembleSim``: a simulated engine that answers the ensemble's judge prompts in their formats.

A test double, like ``SimEngine`` which it extends (latency, ``n``, token counting, cancellation and
failures are SimEngine's): prompts it recognises by their headings (``prompts.*_HEAD``) get a
well-formed critique, ranking, verdict, unit-test list or unit-test verdicts; everything else (the
generators' calls) is answered by the SimEngine mode in ``options``. Judgments follow one rule:
a candidate is "good" when it matches ``prefer`` (a regex; every candidate when None). Rankers put
good candidates first (original order otherwise), verifiers say ``[Correct]`` for good ones only,
evaluators pass every test for good ones and fail every test for the others. ``informed`` limits
the rule to some roles (``critic``, ``ranker``, ``fuser``, ``verifier``, ``evaluator``); the others
judge blindly: a blind ranker keeps the order it was given, a blind fuser copies the first
candidate, a blind verifier accepts everything, a blind critic finds nothing to say either way, a
blind evaluator passes every test. (The architecture-search tests use a sim whose verifier alone
knows the truth, so that the best architecture is known.)

It exists to exercise orchestration (concurrency, batching, budgets, selection) and to benchmark it
without a model; it understands nothing.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from conclave.agents.ensemble import prompts
from conclave.cluster.engines.sim import SimEngine, SimOptions, SimReply
from conclave.schema.chat import ChatRequest

__all__ = ["ROLES", "EnsembleSim"]

ROLES: tuple[str, ...] = ("critic", "ranker", "fuser", "verifier", "evaluator")

_BLOCK = re.compile(r"^\[(\d+)\] (.*?)(?=\n\n\[\d+\] |\n\n(?:Rank|For every|Instruction again)|\Z)", re.S | re.M)


def _candidates(prompt: str) -> list[str]:
    return [m.group(2).split("\nCritique of [")[0].strip() for m in _BLOCK.finditer(prompt)]


def _between(prompt: str, start: str, end: str) -> str:
    i = prompt.find(start)
    if i < 0:
        return ""
    i += len(start)
    j = prompt.find(end, i)
    return prompt[i : j if j >= 0 else len(prompt)].strip()


class EnsembleSim(SimEngine):
    provider = "sim"

    def __init__(
        self,
        options: SimOptions | dict[str, Any] | None = None,
        *,
        name: str = "sim",
        prefer: str | None = None,
        unit_tests: int = 3,
        informed: Collection[str] = ROLES,
    ) -> None:
        super().__init__(options, name=name)
        unknown = set(informed) - set(ROLES)
        if unknown:
            raise ValueError(f"unknown judge roles {sorted(unknown)}; known: {', '.join(ROLES)}")
        self.prefer = re.compile(prefer) if prefer else None
        self.unit_tests = unit_tests
        self.informed = frozenset(informed)

    def _good(self, text: str, role: str) -> bool:
        if role not in self.informed:
            return True
        return self.prefer is None or bool(self.prefer.search(text))

    def _reply(self, request: ChatRequest, index: int) -> SimReply:
        user = [m for m in request.messages if m.role == "user"]
        prompt = user[-1].text() if user else ""
        # A retry conversation ends with the retry note; judge the original prompt again.
        if request.messages[-1].role == "user" and request.messages[-1].text().startswith("Your reply could not"):
            prompt = user[-2].text() if len(user) > 1 else prompt
        if prompt.startswith(prompts.CRITIC_HEAD):
            cands = _candidates(prompt)
            return SimReply(
                content="\n\n".join(
                    f"[{i}]\nStrengths:\n- {'on point' if self._good(c, 'critic') else 'fluent'}\n"
                    f"Weaknesses:\n- {'none noted' if self._good(c, 'critic') else 'misses the question'}"
                    for i, c in enumerate(cands, 1)
                )
            )
        if prompt.startswith(prompts.RANKER_HEAD):
            cands = _candidates(prompt)
            order = [i for i, c in enumerate(cands, 1) if self._good(c, "ranker")]
            order += [i for i in range(1, len(cands) + 1) if i not in order]
            return SimReply(content="Answer: " + " > ".join(f"[{i}]" for i in order) + "\nBy the rule.")
        if prompt.startswith(prompts.FUSER_HEAD):
            cands = _candidates(prompt)
            if "fuser" not in self.informed:
                return SimReply(content=cands[0] if cands else "")
            best = next((c for c in cands if self._good(c, "fuser")), cands[0] if cands else "")
            return SimReply(content=f"fused from {len(cands)}: {best}")
        if prompt.startswith(prompts.REASONING_HEAD):
            return SimReply(content="The response is checked against the instruction step by step.")
        if prompt.startswith(prompts.VERDICT_HEAD):
            cand = _between(prompt, "Response: ", "\n\nReasoning: ")
            return SimReply(content="Checked. " + ("[Correct]" if self._good(cand, "verifier") else "[Incorrect]"))
        if prompt.startswith(prompts.UNIT_TESTS_HEAD):
            m = re.search(r"Write (\d+) unit tests", prompt)
            k = int(m.group(1)) if m else self.unit_tests
            return SimReply(content=repr([f"The answer satisfies property {i}" for i in range(1, k + 1)]))
        if prompt.startswith(prompts.EVALUATOR_HEAD):
            cand = _between(prompt, "Candidate response: ", "\n\nUnit tests:\n")
            k = len(re.findall(r"^Unit Test #\d+: ", _between(prompt, "Unit tests:\n", "\n\nReason"), re.M))
            verdict = "[Passed]" if self._good(cand, "evaluator") else "[Failed]"
            return SimReply(content="\n".join(f"Unit Test #{i}: {verdict}" for i in range(1, k + 1)))
        return super()._reply(request, index)
