"""Prompts of the judging components, written for Conclave.

The output conventions follow Archon's so that models tuned on its prompts behave alike: critiques
start with the candidate's identifier (``[2]``), a ranking is a line ``Answer: [2] > [1] > [3]``, a
verdict ends with ``[Correct]`` or ``[Incorrect]``, unit tests are a list of strings, and unit-test
verdicts are lines ``Unit Test #i: [Passed]`` / ``[Failed]``. Each prompt begins with a fixed
heading (the ``*_HEAD`` constants) so that logs, traces and the simulated test engine can tell the
components' calls apart.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "CRITIC_HEAD",
    "EVALUATOR_HEAD",
    "FUSER_HEAD",
    "RANKER_HEAD",
    "REASONING_HEAD",
    "UNIT_TESTS_HEAD",
    "VERDICT_HEAD",
    "critic_prompt",
    "evaluator_prompt",
    "fuser_prompt",
    "ranker_prompt",
    "reasoning_prompt",
    "retry_note",
    "unit_tests_prompt",
    "verdict_prompt",
    "with_unit_tests",
]

CRITIC_HEAD = "## Critique the responses"
RANKER_HEAD = "## Rank the responses"
FUSER_HEAD = "## Combine the responses"
REASONING_HEAD = "## Reason about the response"
VERDICT_HEAD = "## Judge the response"
UNIT_TESTS_HEAD = "## Write unit tests"
EVALUATOR_HEAD = "## Apply the unit tests"

UNIT_TESTS_MARK = "Your response should pass these unit tests:"


def _numbered(candidates: Sequence[str], critiques: Sequence[str | None] | None = None) -> str:
    parts = []
    for i, c in enumerate(candidates, 1):
        block = f"[{i}] {c.strip()}"
        if critiques is not None and critiques[i - 1]:
            block += f"\nCritique of [{i}]: {str(critiques[i - 1]).strip()}"
        parts.append(block)
    return "\n\n".join(parts)


def with_unit_tests(query: str, tests: Sequence[str]) -> str:
    """The query as later layers see it once unit tests exist (Archon appends them the same way)."""
    if not tests:
        return query
    return f"{query}\n\n{UNIT_TESTS_MARK}\n" + "\n".join(f"- {t}" for t in tests)


def critic_prompt(query: str, candidates: Sequence[str]) -> str:
    n = len(candidates)
    return (
        f"{CRITIC_HEAD}\n"
        f"Instruction: {query}\n\n"
        f"Here are {n} responses to the instruction, each with an identifier:\n\n"
        f"{_numbered(candidates)}\n\n"
        f"For every one of the {n} responses, in order, write its identifier on its own line (for example [1]), "
        "then 'Strengths:' and 'Weaknesses:' each followed by short bullet points. Cover all responses and "
        "write nothing before the first identifier."
    )


def ranker_prompt(query: str, candidates: Sequence[str], critiques: Sequence[str | None] | None) -> str:
    n = len(candidates)
    extra = " and its critique" if critiques is not None else ""
    return (
        f"{RANKER_HEAD}\n"
        f"Instruction: {query}\n\n"
        f"Here are {n} responses{extra}, each with an identifier:\n\n"
        f"{_numbered(candidates, critiques)}\n\n"
        f"Rank all {n} responses from the most to the least helpful, correct and relevant to the instruction. "
        "Start your reply with one line of the form 'Answer: [2] > [1] > [3]' listing every identifier once, "
        "then briefly explain."
    )


def fuser_prompt(
    query: str, candidates: Sequence[str], critiques: Sequence[str | None] | None, *, length_control: bool
) -> str:
    extra = " with critiques of their strengths and weaknesses" if critiques is not None else ""
    limit = "\nYour answer must not be longer than the longest response above." if length_control else ""
    return (
        f"{FUSER_HEAD}\n"
        f"Instruction: {query}\n\n"
        f"Several assistants answered the instruction; their responses follow{extra}. Some may be wrong or "
        "biased. Write one answer that keeps what is correct and useful, fixes what is wrong, and reads as a "
        f"single coherent reply. Do not mention the responses themselves.{limit}\n\n"
        f"{_numbered(candidates, critiques)}\n\n"
        f"Instruction again: {query}"
    )


def reasoning_prompt(query: str, candidate: str) -> str:
    return (
        f"{REASONING_HEAD}\n"
        f"Instruction: {query}\n\n"
        f"Response: {candidate.strip()}\n\n"
        "Explain, step by step, whether the response addresses the instruction completely and accurately. "
        "Write only the reasoning."
    )


def verdict_prompt(query: str, candidate: str, reasoning: str) -> str:
    return (
        f"{VERDICT_HEAD}\n"
        f"Instruction: {query}\n\n"
        f"Response: {candidate.strip()}\n\n"
        f"Reasoning: {reasoning.strip()}\n\n"
        "Decide whether the response is correct, checking that the reasoning itself is sound. Explain briefly, "
        "then end with exactly one verdict: [Correct] or [Incorrect]."
    )


def unit_tests_prompt(query: str, cap: int | None) -> str:
    how_many = f"{cap} unit tests" if cap else "unit tests"
    return (
        f"{UNIT_TESTS_HEAD}\n"
        f"Query: {query}\n\n"
        f"Write {how_many} that a correct response to the query must pass. Each is one checkable statement "
        "such as 'The answer states ...' or 'The answer mentions ...' with the expected outcome. Reply with "
        "only a list of strings, for example ['The answer states X', 'The answer mentions Y']."
    )


def evaluator_prompt(query: str, candidate: str, tests: Sequence[str]) -> str:
    listed = "\n".join(f"Unit Test #{i}: {t}" for i, t in enumerate(tests, 1))
    example = "\n".join(f"Unit Test #{i}: [Passed]" for i in range(1, min(len(tests), 2) + 1))
    return (
        f"{EVALUATOR_HEAD}\n"
        f"Query: {query}\n\n"
        f"Candidate response: {candidate.strip()}\n\n"
        f"Unit tests:\n{listed}\n\n"
        "Reason briefly about each test, then finish with one line per test, in order, of the form\n"
        f"{example}\n"
        "using [Passed] or [Failed]."
    )


def retry_note(problem: str, expected: str) -> str:
    """The follow-up message after an unparseable output: what was wrong and the format wanted."""
    return f"Your reply could not be used: {problem}. Reply again, following the format exactly: {expected}"
