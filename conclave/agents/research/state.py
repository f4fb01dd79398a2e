"""The research workflow's checkpointed state and its deterministic text work.

``ResearchState`` is the checklist a research run carries through its steps: every durable step of
the workflow returns the updated state, so the run's checkpoint holds it and a resumed run (or a
run that continues another, "dig deeper") knows exactly what is done, what is pending and why
something was skipped. Completion is read from these statuses, never from a log.

The helpers here do the work that must not depend on the model's size: parsing numbered lists,
reading archived sources, rendering ``index.md`` and ``report_outline.md``,
cleaning citations, assembling ``report.md`` with its references (no line repeated) and checking that every citation
resolves to an archived source. They are pure functions of their inputs, so a replay produces the
same text.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from conclave.core.workspace import Workspace
from conclave.tools._text import slug
from conclave.tools.search.text import terms

from .evidence import near_copy

__all__ = [
    "SOURCES_DIR",
    "STATE_PATH",
    "BudgetStop",
    "EvidenceLine",
    "KeyQuestion",
    "ReportCheck",
    "ResearchState",
    "SectionState",
    "Todo",
    "TodoStatus",
    "assemble_report",
    "check_report",
    "clean_citations",
    "find_citations",
    "parse_list",
    "read_source",
    "render_index",
    "render_outline",
    "source_ids",
    "strip_scaffolding",
    "terms",
]

SOURCES_DIR = "knowledge_base/sources"
#: The checklist, also kept in the workspace so a continued run ("dig deeper") can pick it up.
STATE_PATH = "logs/research_state.json"
REFERENCES_HEADING = "## References"

# A citation: [3] or [1, 4]; not an index like a[1] or x][2].
_CITE = re.compile(r"(?<![\w\]\)])\[(\d{1,4}(?:\s*,\s*\d{1,4})*)\]")
_CITE_SPACED = re.compile(r"([ \t]*)" + _CITE.pattern)  # a dropped citation takes its space along
_REF_LINE = re.compile(r"^\[(\d+)\]\s+(\S+)")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TodoStatus(StrEnum):
    """``partial``: done with less than asked (budget ran low, a model call failed)."""

    PENDING = "pending"
    DONE = "done"
    PARTIAL = "partial"
    SKIPPED = "skipped"
    FAILED = "failed"


class Todo(_Model):
    id: str = Field(description="Stable id: plan, build/r0, write/outline, write/s1, write/assemble.")
    title: str
    status: TodoStatus = TodoStatus.PENDING
    detail: str | None = None


class KeyQuestion(_Model):
    """A key question of the topic tree, with what the context builder found for it."""

    id: int = Field(ge=1)
    text: str
    origin: Literal["question", "model", "previous"] = "question"
    searches: int = Field(default=0, ge=0, description="Deterministic searches made for it so far.")
    sources: list[str] = Field(default_factory=list, description="Archived source files found for it.")
    note: str = Field(description="Its evidence note in knowledge_base/.")
    noted: list[str] = Field(default_factory=list, description="Sources already extracted into the note.")


class EvidenceLine(_Model):
    """A sentence copied from an archived source, chosen for one section."""

    n: int = Field(ge=1, description="Citation number of its source.")
    path: str = Field(description="The archived source it was copied from.")
    text: str
    score: float = Field(description="Similarity to the section's key question.")


class BudgetStop(_Model):
    """A budget limit that stopped part of the workflow early, from ``BudgetExhausted``'s fields
    (or an agent's ``exhausted_limit``), never parsed from a message."""

    stage: Literal["build", "write"]
    where: str = Field(description="What stopped: 'planning', 'searching in round 2', 'section 3'…")
    limit: str = Field(description="The limit as budgets name it: usd, model_calls, tool_calls.search…")
    scope: str | None = Field(default=None, description="The ledger scope whose cap bound, when known.")
    detail: str = ""


class SectionState(_Model):
    n: int = Field(ge=1)
    title: str
    path: str
    key_question: int | None = None
    sources: list[int] = Field(default_factory=list, description="Source numbers (1-based) it draws on.")
    evidence: list[EvidenceLine] = Field(
        default_factory=list, description="Its evidence, most relevant first; no line is in two sections."
    )
    status: TodoStatus = TodoStatus.PENDING
    origin: str | None = Field(default=None, description="model-file, model-answer, ensemble, evidence (+evidence).")
    chars: int = 0
    citations: list[int] = Field(default_factory=list)
    detail: str | None = None
    budget_stop: BudgetStop | None = Field(default=None, description="Set when its drafter ran out of budget.")


class ReportCheck(_Model):
    """What ``check_report`` found in ``report.md``."""

    sections: int = 0
    empty_sections: list[str] = Field(default_factory=list)
    citations: int = 0
    unresolved: list[str] = Field(default_factory=list)
    references: int = 0

    @property
    def ok(self) -> bool:
        return self.sections >= 1 and not self.empty_sections and not self.unresolved


class ResearchState(_Model):
    """The research run's checklist; stored as the value of each workflow step."""

    version: Literal[1] = 1
    question: str
    continued_from: str | None = None
    stage: Literal["build", "write", "done"] = "build"
    todos: list[Todo] = Field(default_factory=list)
    key_questions: list[KeyQuestion] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list, description="Archived sources; [n] is sources[n-1].")
    librarian_notes: list[str] = Field(default_factory=list, description="Notes the librarian agents wrote.")
    rounds_done: int = 0
    sections: list[SectionState] = Field(default_factory=list)
    report: ReportCheck | None = None
    exhausted: list[str] = Field(default_factory=list, description="Budget stops, by stage, as text (see stops).")
    stops: list[BudgetStop] = Field(default_factory=list, description="Budget stops, by stage.")
    problems: list[str] = Field(default_factory=list, description="Model failures worked around.")

    def todo(self, tid: str) -> Todo:
        for t in self.todos:
            if t.id == tid:
                return t
        t = Todo(id=tid, title=tid)
        self.todos.append(t)
        return t

    def mark(self, tid: str, status: TodoStatus, detail: str | None = None, title: str | None = None) -> None:
        t = self.todo(tid)
        t.status = status
        t.detail = detail
        if title:
            t.title = title

    def record_stop(self, stop: BudgetStop) -> None:
        """A budget stop, kept structured (``stops``) and as a line for people (``exhausted``)."""
        self.stops.append(stop)
        self.exhausted.append(f"{stop.stage}: {stop.where}, {stop.detail}".rstrip(", "))

    def stopped(self, stage: Literal["build", "write"]) -> bool:
        return any(s.stage == stage for s in self.stops)

    def number(self, path: str) -> int:
        """The citation number of an archived source (adding it if new)."""
        if path not in self.sources:
            self.sources.append(path)
        return self.sources.index(path) + 1


# -- parsing and extracts ----------------------------------------------------------------------


def parse_list(text: str, max_items: int, *, min_words: int = 2, max_chars: int = 200) -> list[str]:
    """Items of a numbered or bulleted list in a model's reply. Lines that are not list items, too
    short, too long or repeated are dropped, so a rambling reply yields fewer items, never junk."""
    out: list[str] = []
    seen: set[str] = set()
    for raw in text.splitlines():
        m = re.match(r"^\s*(?:\d{1,2}[.)]|[-*•])\s+(.*\S)\s*$", raw)
        if not m:
            continue
        # markdown emphasis and code marks go; an underscore inside a name (lru_cache) stays
        item = re.sub(r"[*`#]+|(?<![A-Za-z0-9])_+|_+(?![A-Za-z0-9])", "", m.group(1)).strip().strip('"').strip()
        key = item.lower()
        if len(item.split()) < min_words or len(item) > max_chars or key in seen:
            continue
        seen.add(key)
        out.append(item)
        if len(out) >= max_items:
            break
    return out


def read_source(ws: Workspace, path: str) -> tuple[str, str, str]:
    """(title, source id, body) of a file archived by ``archive_source``."""
    text = ws.read(path)
    lines = text.splitlines()
    title = lines[0].lstrip("# ").strip() if lines else path
    source = ""
    body_from = 1
    for i, line in enumerate(lines[1:6], 1):
        if line.startswith("source: "):
            source = line[len("source: ") :].strip()
            body_from = i + 1
        elif line.startswith("found by ") or not line.strip():
            body_from = i + 1
        else:
            break
    return title, source, "\n".join(lines[body_from:])


def source_ids(ws: Workspace) -> dict[str, str]:
    """Source id (URL, corpus passage) → archived path, for every file in ``knowledge_base/sources``."""
    out: dict[str, str] = {}
    for path in ws.list(SOURCES_DIR):
        if not path.endswith(".md"):
            continue
        _, source, _ = read_source(ws, path)
        out[source or path] = path
    return out


def strip_scaffolding(text: str, prompt: str = "") -> str:
    """Model text without what the workflow itself put in the context: budget blocks, role
    reminders and lines copied from the prompt (small models echo their input)."""
    text = re.sub(r"<budget>.*?(</budget>|$)", "", text, flags=re.DOTALL)
    copied = {ln.strip() for ln in prompt.splitlines() if len(ln.strip()) > 12}
    keep = []
    for line in text.splitlines():
        bare = line.strip()
        if re.match(r"^\((librarian|writer of section)\b", bare) or (bare and bare in copied):
            continue
        keep.append(line)
    return "\n".join(keep).strip()


# -- rendering ---------------------------------------------------------------------------------


def note_path(kq_id: int, text: str) -> str:
    return f"knowledge_base/q{kq_id}-{slug(text, 40)}.md"


def render_index(state: ResearchState, previous: str = "") -> str:
    """``index.md``: the question, the topic tree of key questions with their status, and the
    checklist. Anything the agents wrote under ``## Notes`` is kept."""
    lines = [f"# Research: {state.question}", "", "## Key questions", ""]
    for kq in state.key_questions:
        box = "x" if kq.sources else " "
        lines.append(f"- [{box}] Q{kq.id}. {kq.text}")
        lines.append(f"  - evidence: {kq.note} ({len(kq.sources)} sources)")
    lines += ["", "## Checklist", ""]
    for t in state.todos:
        detail = f" — {t.detail}" if t.detail else ""
        lines.append(f"- [{'x' if t.status != TodoStatus.PENDING else ' '}] {t.title} ({t.status.value}){detail}")
    lines += ["", f"Sources archived: {len(state.sources)} (in {SOURCES_DIR}/)", ""]
    kept = previous.split("\n## Notes", 1)
    lines.append("## Notes" + (kept[1] if len(kept) == 2 else "\n\n"))
    return "\n".join(lines).rstrip() + "\n"


def render_outline(state: ResearchState, titles: dict[str, str]) -> str:
    """``report_outline.md``: each section with the key question, evidence and sources it uses."""
    lines = [f"# Outline: {state.question}", ""]
    for s in state.sections:
        lines.append(f"## {s.n}. {s.title}")
        kq = next((k for k in state.key_questions if k.id == s.key_question), None)
        if kq is not None:
            lines.append(f"- answers: Q{kq.id}. {kq.text}")
            lines.append(f"- evidence: {kq.note}")
        for n in s.sources:
            path = state.sources[n - 1]
            lines.append(f"- [{n}] {path} — {titles.get(path, '')}".rstrip(" —"))
        lines.append(f"- file: {s.path}")
        lines.append("")
    return "\n".join(lines)


# -- citations and the report ------------------------------------------------------------------


def find_citations(text: str) -> list[int]:
    """Citation numbers in order of appearance (with repeats)."""
    return [int(n) for m in _CITE.finditer(text) for n in re.split(r"\s*,\s*", m.group(1))]


def clean_citations(text: str, valid: set[int]) -> tuple[str, list[int], list[int]]:
    """Drop citations of numbers not in ``valid``; returns (text, kept numbers, dropped numbers)."""
    kept: list[int] = []
    dropped: list[int] = []

    def fix(m: re.Match[str]) -> str:
        nums = [int(n) for n in re.split(r"\s*,\s*", m.group(2))]
        good = [n for n in nums if n in valid]
        dropped.extend(n for n in nums if n not in valid)
        kept.extend(good)
        return f"{m.group(1)}[{', '.join(str(n) for n in good)}]" if good else ""

    return _CITE_SPACED.sub(fix, text), kept, dropped


def assemble_report(question: str, sections: list[tuple[str, str]], sources: list[str], titles: dict[str, str]) -> str:
    """``report.md`` from (title, body) sections whose citations number into ``sources``.

    Citations are renumbered by first appearance so the references run [1], [2]… in reading order,
    and only cited sources are listed, each with its archived path."""
    order: dict[int, int] = {}
    for _, body in sections:
        for n in find_citations(body):
            if 1 <= n <= len(sources) and n not in order:
                order[n] = len(order) + 1

    def renumber(m: re.Match[str]) -> str:
        nums = [order[int(n)] for n in re.split(r"\s*,\s*", m.group(1)) if int(n) in order]
        return f"[{', '.join(str(n) for n in dict.fromkeys(nums))}]" if nums else ""

    out = [f"# {question}", ""]
    seen: list[str] = []
    for title, body in sections:
        out += [f"## {title}", "", _drop_repeats(_CITE.sub(renumber, body).strip(), seen), ""]
    out += [REFERENCES_HEADING, ""]
    for old, new in sorted(order.items(), key=lambda kv: kv[1]):
        path = sources[old - 1]
        title = titles.get(path, "")
        out.append(f"[{new}] {path}" + (f" — {title}" if title else ""))
    return "\n".join(out).rstrip() + "\n"


def _drop_repeats(body: str, seen: list[str], min_chars: int = 40) -> str:
    """``body`` without the substantive lines that near-copy one seen earlier in the report (a
    reader should not read the same sentence twice); ``seen`` grows with the lines kept."""
    keep = []
    for line in body.splitlines():
        bare = line.strip().lstrip("-*• ").strip()
        if len(bare) >= min_chars:
            if any(near_copy(bare, s) for s in seen):
                continue
            seen.append(bare)
        keep.append(line)
    if not any(len(ln.strip()) >= min_chars for ln in keep) and body.strip():
        return body.strip()  # a section is never emptied: its lines were all said before, but it has them
    return "\n".join(keep).strip()


def check_report(report: str, ws: Workspace) -> ReportCheck:
    """Check ``report.md`` as a reader would: every ``## `` section has text, every citation
    number appears in the references, and every reference names a file archived under
    ``knowledge_base/sources/``."""
    body, _, refs_text = report.partition("\n" + REFERENCES_HEADING)
    refs: dict[int, str] = {}
    for line in refs_text.splitlines():
        m = _REF_LINE.match(line.strip())
        if m:
            refs[int(m.group(1))] = m.group(2)
    chunks = re.split(r"^## ", body, flags=re.MULTILINE)[1:]
    empty = [c.splitlines()[0] for c in chunks if not "\n".join(c.splitlines()[1:]).strip()]
    cited = find_citations(body)
    unresolved: list[str] = []
    for n in dict.fromkeys(cited):
        path = refs.get(n)
        if path is None:
            unresolved.append(f"[{n}] has no reference")
        elif not path.startswith(SOURCES_DIR + "/") or not ws.exists(path):
            unresolved.append(f"[{n}] → {path} is not an archived source")
    return ReportCheck(
        sections=len(chunks), empty_sections=empty, citations=len(cited), unresolved=unresolved, references=len(refs)
    )
