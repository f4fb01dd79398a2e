"""Parsers for judge outputs. Each returns a value or raises ``ParseError`` saying what was wrong,
which the component sends back to the model when it retries (within budget).

They accept the reasonable variations models produce (missing brackets, ranges such as ``[3-5]``,
verdict words without brackets) and refuse what cannot be read unambiguously, rather than guess.
"""

from __future__ import annotations

import ast
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

__all__ = [
    "ParseError",
    "extract_answer",
    "majority",
    "parse_critiques",
    "parse_ranking",
    "parse_test_verdicts",
    "parse_unit_tests",
    "parse_verdict",
]


class ParseError(ValueError):
    """A model output that does not have the expected form."""


def _marker(i: int) -> re.Pattern[str]:
    return re.compile(rf"\[\s*{i}\s*\]")


def parse_critiques(text: str, n: int) -> list[str]:
    """One critique per candidate, found by the identifiers ``[1]`` … ``[n]`` in order."""
    if n < 1:
        return []
    starts: list[tuple[int, int]] = []
    pos = 0
    for i in range(1, n + 1):
        m = _marker(i).search(text, pos)
        if m is None:
            missing = [str(k) for k in range(i, n + 1)]
            raise ParseError(f"no critique found for response(s) [{'], ['.join(missing)}]")
        starts.append((m.start(), m.end()))
        pos = m.end()
    out = []
    for k, (_, end) in enumerate(starts):
        stop = starts[k + 1][0] if k + 1 < n else len(text)
        body = text[end:stop].strip().strip("-").strip()
        if len(body) < 3:
            raise ParseError(f"the critique of response [{k + 1}] is empty")
        out.append(body)
    return out


def parse_ranking(text: str, n: int) -> tuple[list[int], bool]:
    """0-based candidate indices, best first, and whether the ranking was complete.

    Reads the line starting with ``Answer:`` if there is one, else the first line naming at least two
    identifiers (or one, when n is 1). Ranges ``[3-5]`` expand; duplicates and out-of-range ids are
    dropped; candidates the model left out follow in their original order (the ranking is then
    reported incomplete). No usable identifier at all is a ``ParseError``.
    """
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    chosen = next((ln for ln in lines if ln.lower().lstrip("*# ").startswith("answer")), None)
    if chosen is None or not re.search(r"\[\s*\d", chosen):
        need = 1 if n == 1 else 2
        chosen = next((ln for ln in lines if len(re.findall(r"\[\s*\d+\s*(?:-\s*\d+\s*)?\]", ln)) >= need), None)
    if chosen is None:
        raise ParseError("no line of the form 'Answer: [2] > [1] > [3]'")
    order: list[int] = []
    for a, b in re.findall(r"\[\s*(\d+)\s*(?:-\s*(\d+)\s*)?\]", chosen):
        ids = range(int(a), int(b) + 1) if b else [int(a)]
        for i in ids:
            if 1 <= i <= n and (i - 1) not in order:
                order.append(i - 1)
    if not order:
        raise ParseError(f"the ranking names no identifier between [1] and [{n}]")
    complete = len(order) == n
    order += [i for i in range(n) if i not in order]
    return order, complete


_CORRECT = re.compile(r"\[\s*correct\s*\]", re.I)
_INCORRECT = re.compile(r"\[\s*incorrect\s*\]", re.I)


def parse_verdict(text: str) -> bool:
    """``[Correct]`` → True, ``[Incorrect]`` → False; both or neither is a ``ParseError``."""
    yes, no = bool(_CORRECT.search(text)), bool(_INCORRECT.search(text))
    if yes and no:
        raise ParseError("both [Correct] and [Incorrect] appear; give exactly one verdict")
    if not yes and not no:
        raise ParseError("no verdict [Correct] or [Incorrect]")
    return yes


def parse_unit_tests(text: str, cap: int | None) -> list[str]:
    """A list of unit tests: a JSON or Python list of strings, else bullet or numbered lines. Truncated
    to ``cap``; fewer than ``cap`` is accepted."""
    body = text.strip()
    tests: list[str] = []
    m = re.search(r"\[.*\]", body, re.S)
    if m:
        for loader in (json.loads, ast.literal_eval):
            try:
                value = loader(m.group(0))
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                continue
            if isinstance(value, list) and all(isinstance(t, str) for t in value):
                tests = [t.strip() for t in value if t.strip()]
                break
    if not tests:
        for ln in body.splitlines():
            item = re.match(r"^\s*(?:[-*•]|\d+[.)])\s+(.*\S)", ln)
            if item:
                tests.append(item.group(1).strip().strip("'\""))
    if not tests:
        raise ParseError("no list of unit tests (expected ['test 1', 'test 2', ...])")
    return tests[:cap] if cap else tests


_PASS = re.compile(r"\[\s*passed\s*\]|\bpass(?:ed|es)?\b", re.I)
_FAIL = re.compile(r"\[\s*failed\s*\]|\bfail(?:ed|s)?\b", re.I)


def parse_test_verdicts(text: str, n_tests: int) -> list[bool]:
    """Pass/fail per unit test from the last ``Unit Test #i:`` line of each; a test whose verdict is
    missing or ambiguous is a ``ParseError``."""
    out: list[bool] = []
    for i in range(1, n_tests + 1):
        hits = list(re.finditer(rf"unit\s*test\s*#?\s*{i}\s*:", text, re.I))
        if not hits:
            raise ParseError(f"no verdict line 'Unit Test #{i}: [Passed]' or '[Failed]'")
        start = hits[-1].end()
        nxt = re.search(rf"unit\s*test\s*#?\s*{i + 1}\s*:", text[start:], re.I)
        seg = text[start : start + nxt.start()] if nxt else text[start:].split("\n", 1)[0]
        passed, failed = bool(_PASS.search(seg)), bool(_FAIL.search(seg))
        if passed == failed:
            raise ParseError(f"unit test #{i} has no single verdict [Passed] or [Failed]")
        out.append(passed)
    return out


_BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}")
_ANSWER_IS = re.compile(r"(?:final answer|answer)\s*(?:is|:)\s*\**\s*([^\n]+)", re.I)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")


def _normal(s: str) -> str:
    s = unicodedata.normalize("NFKC", s).strip().strip("*$ ").rstrip(".!。").strip()
    s = re.sub(r"\s+", " ", s).lower()
    if _NUMBER.fullmatch(s):
        s = s.replace(",", "")
        if re.fullmatch(r"-?\d+\.0+", s):
            s = s.split(".")[0]
    return s


def extract_answer(text: str, pattern: str | None = None) -> str:
    """The answer a response commits to, normalised for voting.

    With ``pattern``: its first group (or the whole match) of the last match. Otherwise the last
    ``\\boxed{}``, else the last 'answer is …' / 'Answer: …', else the last number, else the whole
    text. Normalisation: NFKC, case, whitespace, surrounding punctuation, thousands separators.
    """
    if pattern is not None:
        matches = list(re.finditer(pattern, text))
        if matches:
            m = matches[-1]
            return _normal(m.group(1) if m.groups() else m.group(0))
        return _normal(text)
    boxed = _BOXED.findall(text)
    if boxed:
        return _normal(boxed[-1])
    said = _ANSWER_IS.findall(text)
    if said:
        last = said[-1]
        nums = _NUMBER.findall(last)
        return _normal(nums[0]) if len(nums) == 1 else _normal(last)
    nums = _NUMBER.findall(text)
    if nums:
        return _normal(nums[-1])
    return _normal(text)


def majority(answers: Sequence[str]) -> tuple[str, int]:
    """The most frequent answer and its count; a tie goes to the answer seen first (deterministic)."""
    if not answers:
        raise ValueError("no answers to vote on")
    counts = Counter(answers)
    best = max(counts.values())
    for a in answers:
        if counts[a] == best:
            return a, best
    raise AssertionError("unreachable")  # pragma: no cover
