"""Stage 2, the report writer (ledger scope ``run/write``): allocate the evidence to sections, title
them, write them in parallel (an agent or an ensemble each), check every draft against its
evidence, and assemble ``report.md`` with its references."""

from __future__ import annotations

import asyncio
import functools
import re
from typing import Any

from conclave.core.context import Metered
from conclave.core.ledger import BudgetExhausted, limit_label
from conclave.core.steering import is_outer_scope
from conclave.core.workspace import Workspace
from conclave.schema import RunStatus, StopReason
from conclave.schema.chat import EngineError

from ..drafting import DraftRequest, EvidenceItem
from ..loop import AgentSetup, run_agent_with
from .base import Workflow, Written, strip_heading
from .evidence import Candidate, Meaning, Picked, allocate_evidence, candidates, ground
from .options import WRITER_SYSTEM, ResearchOptions
from .state import (
    BudgetStop,
    EvidenceLine,
    KeyQuestion,
    ResearchState,
    SectionState,
    TodoStatus,
    assemble_report,
    check_report,
    clean_citations,
    parse_list,
    read_source,
    render_outline,
    strip_scaffolding,
)

__all__ = ["ReportWriter", "asked_questions", "evidence_pool", "select_evidence"]


def evidence_pool(ws: Workspace, sources: list[str]) -> list[Candidate]:
    """Every prose sentence of every archived source (``sources[n-1]`` is citation ``n``)."""
    pool: list[Candidate] = []
    for n, path in enumerate(sources, 1):
        if ws.exists(path):
            title, _, body = read_source(ws, path)
            pool += candidates(n, path, body, title)
    return pool


def asked_questions(s: ResearchState) -> list[KeyQuestion]:
    """The key questions a section may be written for: those that found sources (else the question)."""
    return [kq for kq in s.key_questions if kq.sources] or s.key_questions[:1]


def select_evidence(
    queries: list[str], pool: list[Candidate], meaning: Meaning, opts: ResearchOptions, question: str
) -> list[list[Picked]]:
    """Each query's evidence lines, as stage 2 chooses them (``allocate_evidence``). A report with
    fewer sections gets more lines per section: twice ``evidence_lines`` over the report at most,
    shared among the sections that have evidence, not among the key questions asked."""
    lines = opts.evidence_lines
    return allocate_evidence(queries, pool, meaning, lines, anchor=question, report_lines=2 * lines)


class ReportWriter(Workflow):
    """The steps of stage 2 (each returns the updated checklist or a section's state)."""

    def evidence_pool(self, s: ResearchState) -> list[Candidate]:
        """Every prose sentence of every archived source, the candidates for all sections."""
        return evidence_pool(self.ctx.workspace, s.sources)

    def allocate(self, s: ResearchState, queries: list[str]) -> list[list[EvidenceLine]]:
        """Each query's evidence (see ``select_evidence``): no sentence in two sections."""
        picked = select_evidence(queries, self.evidence_pool(s), self.meaning, self.opts, self.question)
        return [
            [EvidenceLine(n=p.candidate.n, path=p.candidate.path, text=p.candidate.text, score=p.score) for p in sec]
            for sec in picked
        ]

    async def outline(self, state: ResearchState) -> ResearchState:
        ctx, o, ws = self.ctx, self.opts, self.ctx.workspace
        s = state.model_copy(deep=True)
        await ctx.emit("stage.started", {"stage": "write", "budget": await self.budget("run/write")})
        asked = asked_questions(s)
        detail = None
        allocated = await asyncio.to_thread(self.allocate, s, [kq.text for kq in asked]) if s.sources else []
        allocated += [[] for _ in range(len(asked) - len(allocated))]
        plans = [(kq, ev) for kq, ev in zip(asked, allocated, strict=True) if ev][: o.max_sections]
        if not plans and s.sources:  # nothing passed the relevance bar: the closest sentences, said so
            pool = self.evidence_pool(s)
            sims = await asyncio.to_thread(self.meaning.matrix, [c.text for c in pool], [self.question])
            best = sorted(range(len(pool)), key=lambda i: (-float(sims[i, 0]), i))[: o.evidence_lines]
            lines = [
                EvidenceLine(n=pool[i].n, path=pool[i].path, text=pool[i].text, score=round(float(sims[i, 0]), 4))
                for i in best
            ]
            if lines:
                plans = [(asked[0], lines)]
                detail = "no archived sentence is clearly relevant to a key question; the closest ones are used"
        titles = [kq.text for kq, _ in plans]
        if plans and o.plan_with_model:
            listed = "\n".join(f"{i}. {t}" for i, t in enumerate(titles, 1))
            prompt = (
                f"Report question: {self.question}\nThe report has these sections:\n{listed}\n\n"
                "Write a short heading for each section, one per line, numbered the same way. No other text. "
                "(outliner)"
            )
            try:
                text = await self.call_model(
                    self.meter("write", "write", "outliner"),
                    prompt,
                    min(o.max_tokens, 24 * len(titles) + 24),
                    "outliner",
                )
                headings = [re.sub(r"[\[\]]", "", h) for h in parse_list(text, len(titles), min_words=1, max_chars=90)]
                if headings:  # a heading must name its section's key question, else the question is the heading
                    sims = await asyncio.to_thread(self.meaning.matrix, headings, titles[: len(headings)])
                    titles = [
                        h if float(sims[i, i]) >= self.meaning.t.heading else titles[i] for i, h in enumerate(headings)
                    ] + titles[len(headings) :]
            except BudgetExhausted as e:
                if is_outer_scope(e.scope):
                    raise  # the tenant's (or key's) budget: the runner pauses the run
                detail = f"no budget for titles ({e}); the key questions are the headings"
            except EngineError as e:
                s.problems.append(f"outliner: {e}")
                detail = f"the outliner failed ({e}); the key questions are the headings"
        s.sections = [
            SectionState(
                n=n,
                title=titles[n - 1],
                path=f"sections/s{n}.md",
                key_question=kq.id,
                sources=sorted({e.n for e in lines}),
                evidence=lines,
            )
            for n, (kq, lines) in enumerate(plans, 1)
        ]
        titles_by_path = {p: read_source(ws, p)[0] for p in s.sources if ws.exists(p)}
        ws.write("report_outline.md", render_outline(s, titles_by_path))
        if not s.sections:
            s.mark("write/outline", TodoStatus.FAILED, "no evidence to write from")
        else:
            s.mark(
                "write/outline",
                TodoStatus.DONE if detail is None else TodoStatus.PARTIAL,
                detail or f"{len(s.sections)} sections",
            )
        for sec in s.sections:
            s.mark(f"write/s{sec.n}", TodoStatus.PENDING, title=f"Section {sec.n}: {sec.title}")
        self.save(s)
        return s

    def evidence(self, sec: SectionState) -> list[EvidenceItem]:
        """The section's evidence as the drafters see it, most relevant first."""
        return [EvidenceItem(n=e.n, path=e.path, extract=e.text) for e in sec.evidence]

    def writer_task(self, sec: SectionState, s: ResearchState) -> str:
        lines = [
            f"Research question: {self.question}",
            f"Write section {sec.n} of the report: {sec.title}",
            "",
            "Evidence (cite it by number):",
        ]
        lines += [f"[{e.n}] {e.extract}" for e in self.evidence(sec)[:5]]
        kq = next((k for k in s.key_questions if k.id == sec.key_question), None)
        more = ([kq.note] if kq else []) + s.librarian_notes[:3]
        if more:
            lines += ["", "More notes in the workspace: " + ", ".join(more)]
        lines += [
            "",
            f"Write one or two paragraphs that answer the section's question, citing sources like [{sec.sources[0]}]"
            if sec.sources
            else "Write one or two paragraphs that answer the section's question",
            f"Save them with the write tool to {sec.path}, then finish.",
        ]
        return "\n".join(lines)

    async def section(self, sec: SectionState, state: ResearchState) -> SectionState:
        ctx, o = self.ctx, self.opts
        prefix = f"research/write/s{sec.n}/"
        meter = self.meter(f"write/s{sec.n}", "write", f"writer-s{sec.n}")
        async with self.sem:
            written: Written
            if self.drafter is not None and self.ensemble is not None:
                drafted: dict[str, Any] = await ctx.step(
                    f"{prefix}draft", functools.partial(self.draft, sec, state, meter)
                )
                written = Written(
                    RunStatus(drafted["status"]),
                    StopReason(drafted["stop_reason"]),
                    drafted["detail"],
                    None,
                    "ensemble",
                    drafted.get("limit"),
                    drafted.get("scope"),
                )
            else:
                setup = AgentSetup(
                    task=self.writer_task(sec, state),
                    meter=meter,
                    name=f"writer-s{sec.n}",
                    system=WRITER_SYSTEM,
                    user_system=ctx.spec.system,
                    prefix=prefix,
                    reminder=f"(writer of section {sec.n}, turn {{turn}}: write {sec.path}, then finish)",
                    set_partial=False,
                )
                out = await run_agent_with(
                    ctx,
                    setup,
                    opts=self.agent_options(o.writer_steps),
                    tools=dict(self.fs),
                    registry=self.reg,
                    max_steps=o.writer_steps,
                )
                limit = (out.result or {}).get("exhausted_limit")
                written = Written(out.status, out.stop_reason, out.detail, out.output, "model", limit)
            checked: SectionState = await ctx.step(
                f"{prefix}check", functools.partial(self.check_section, sec, state, written), model=SectionState
            )
            return checked

    async def draft(self, sec: SectionState, s: ResearchState, meter: Metered) -> dict[str, Any]:
        assert self.drafter is not None and self.ensemble is not None
        request = DraftRequest(
            ensemble=self.ensemble,
            model=self.model,
            question=self.question,
            title=sec.title,
            evidence=self.evidence(sec),
            instructions=WRITER_SYSTEM,
            max_tokens=self.opts.max_tokens,
        )
        try:
            text = await self.drafter(self.ctx, request, meter=meter)
        except BudgetExhausted as e:
            if is_outer_scope(e.scope):
                raise  # the tenant's (or key's) budget: the runner pauses the run, the draft resumes
            return {
                "status": RunStatus.BUDGET_EXHAUSTED.value,
                "stop_reason": "budget_exhausted",
                "detail": str(e),
                "limit": limit_label(e.limit),
                "scope": e.scope,
            }
        except EngineError as e:
            return {"status": RunStatus.FAILED.value, "stop_reason": "error", "detail": f"ensemble failed: {e}"}
        self.ctx.workspace.write(sec.path, f"# {sec.title}\n\n{text.strip()}\n")
        return {"status": RunStatus.SUCCEEDED.value, "stop_reason": "end_turn", "detail": None}

    async def check_section(self, sec: SectionState, s: ResearchState, written: Written) -> SectionState:
        """The section as the reader gets it: the drafter's sentences that the section's evidence
        supports (each citing the source that supports it; citations of unknown numbers and
        unsupported sentences dropped), then the evidence itself, one cited line per sentence."""
        ctx, o, ws = self.ctx, self.opts, self.ctx.workspace
        out = sec.model_copy(deep=True)
        prompt = self.writer_task(sec, s)
        drafts = [
            (strip_scaffolding(strip_heading(ws.read(sec.path)), prompt) if ws.exists(sec.path) else "", "-file"),
            (strip_scaffolding(strip_heading(written.output or ""), prompt), "-answer"),
        ]
        picked = [Picked(Candidate(e.n, e.path, e.text), e.score) for e in sec.evidence]
        valid = set(range(1, len(s.sources) + 1))
        prose, origin, cited = "", "evidence", []
        dropped: list[int] = []
        unsupported = 0
        for text, label in drafts:
            if len(text) < o.section_min_chars:
                continue
            text, _, bad = clean_citations(text, valid)
            dropped += bad
            grounded, cites, n_out = await asyncio.to_thread(ground, text, picked, self.meaning)
            unsupported += n_out
            if grounded:
                prose, origin, cited = grounded, written.origin + label, cites
                break
        bullets = "\n".join(f"- {e.text} [{e.n}]" for e in sec.evidence)
        body = f"{prose}\n\n{bullets}" if prose else bullets
        kept = cited + [e.n for e in sec.evidence]
        ws.write(sec.path, f"# {sec.title}\n\n{body.strip()}\n")
        out.origin = origin
        out.chars = len(body.strip())
        out.citations = sorted(set(kept))
        notes = []
        if written.status != RunStatus.SUCCEEDED:
            notes.append(f"drafter {written.stop_reason.value}: {written.detail}")
        if written.status == RunStatus.BUDGET_EXHAUSTED:
            out.budget_stop = BudgetStop(
                stage="write",
                where=f"section {sec.n}",
                limit=written.limit or "unknown",
                scope=written.scope,
                detail=f"its drafter ran out of budget ({written.detail}); written from its evidence",
            )
        if dropped:
            notes.append(f"dropped citations to unknown sources {sorted(set(dropped))}")
        if unsupported:
            notes.append(f"dropped {unsupported} drafted sentence(s) no evidence supports")
        out.detail = "; ".join(notes) or None
        out.status = TodoStatus.DONE if not origin.startswith("evidence") else TodoStatus.PARTIAL
        if written.status == RunStatus.BUDGET_EXHAUSTED and origin == "evidence":
            out.status = TodoStatus.PARTIAL
        await ctx.emit(
            "log",
            {
                "stage": "write",
                "step": f"section {sec.n}",
                "message": f"section {sec.n} written ({origin}, {out.chars} characters)",
                "origin": origin,
                "citations": out.citations,
            },
        )
        return out

    async def assemble(self, state: ResearchState, written: list[SectionState]) -> ResearchState:
        ctx, ws = self.ctx, self.ctx.workspace
        s = state.model_copy(deep=True)
        s.sections = sorted(written, key=lambda x: x.n)
        parts = [(sec.title, strip_heading(ws.read(sec.path))) for sec in s.sections if ws.exists(sec.path)]
        parts = [(t, b) for t, b in parts if b.strip()]
        titles = {p: read_source(ws, p)[0] for p in s.sources if ws.exists(p)}
        if parts:
            report = assemble_report(self.question, parts, s.sources, titles)
        else:
            why = "; ".join(s.exhausted + s.problems) or "no sources were found"
            report = f"# {self.question}\n\nNo section could be written: {why}.\n"
        ws.write("report.md", report)
        s.report = check_report(report, ws)
        for sec in s.sections:
            s.mark(f"write/s{sec.n}", sec.status, sec.detail or sec.origin)
            if sec.budget_stop is not None:
                s.record_stop(sec.budget_stop)
        n_ok = sum(1 for sec in s.sections if sec.status == TodoStatus.DONE)
        s.mark(
            "write/sections",
            TodoStatus.DONE if s.sections and n_ok == len(s.sections) else TodoStatus.PARTIAL,
            f"{n_ok} of {len(s.sections)} sections from the writers, the rest from the evidence",
        )
        s.mark(
            "write/assemble",
            TodoStatus.DONE if s.report.ok else TodoStatus.FAILED,
            f"{s.report.sections} sections, {s.report.citations} citations, {s.report.references} references"
            + (f"; unresolved: {s.report.unresolved}" if s.report.unresolved else ""),
        )
        s.stage = "done"
        self.save(s)
        await ctx.emit(
            "stage.finished",
            {
                "stage": "write",
                "sections": s.report.sections,
                "citations": s.report.citations,
                "references": s.report.references,
                "sources": len(s.sources),
                "ok": s.report.ok,
                "budget": await self.budget("run/write"),
            },
        )
        return s
