"""Stage 1, the context builder (ledger scope ``run/build``): plan key questions, then rounds of
seeded searches and a librarian agent, each round filing evidence into the key questions' notes."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from typing import Any

from pydantic import ValidationError

from conclave.core.context import Metered
from conclave.core.kinds import Outcome
from conclave.core.ledger import BudgetExhausted, limit_label
from conclave.core.steering import is_outer_scope
from conclave.schema import RunStatus
from conclave.schema.chat import EngineError
from conclave.tools._text import archive_source
from conclave.tools.base import Tool, ToolContext, ToolError, execute
from conclave.tools.search import (
    LocalCorpusProvider,
    PythonDocsProvider,
    SearchProvider,
    SearchTool,
    document_of,
    overview,
)
from conclave.tools.search.overview import OVERVIEW_FRAGMENT, OVERVIEW_MIN_LINES
from conclave.tools.search.text import Hit, entry_of

from ..loop import AgentSetup, run_agent_with
from .base import Workflow
from .evidence import RERANK_POOL, allocate_evidence, candidates, distinct_questions, rerank
from .options import LIBRARIAN_SYSTEM
from .state import (
    SOURCES_DIR,
    STATE_PATH,
    BudgetStop,
    KeyQuestion,
    ResearchState,
    TodoStatus,
    note_path,
    parse_list,
    read_source,
    source_ids,
)

__all__ = ["OVERVIEW_POOL", "ContextBuilder"]

#: Passages of a document searched for its overview (most modules have fewer entries).
OVERVIEW_POOL = 60


class ContextBuilder(Workflow):
    """The steps of stage 1 (each returns the updated checklist)."""

    async def start(self) -> ResearchState:
        ctx, o, ws = self.ctx, self.opts, self.ctx.workspace
        s = ResearchState(question=self.question)
        copied = 0
        if o.continue_from:
            files = await ctx.store.load_workspace(o.continue_from)
            for path, data in sorted(files.items()):
                if path.startswith("sections/"):
                    continue  # the report is rewritten; stale drafts would pass for new ones
                ws.write(path, data)
                copied += 1
            prev: ResearchState | None = None
            if STATE_PATH in files:
                with contextlib.suppress(ValidationError, ValueError):
                    prev = ResearchState.model_validate_json(files[STATE_PATH])
            if prev is not None:
                s = prev.model_copy(
                    update={
                        "question": self.question,
                        "continued_from": o.continue_from,
                        "stage": "build",
                        "todos": [],
                        "sections": [],
                        "report": None,
                        "exhausted": [],
                        "stops": [],
                        "problems": [],
                        "rounds_done": 0,
                    }
                )
                for kq in s.key_questions:
                    kq.origin = "previous"
            else:
                s.continued_from = o.continue_from
                for path in sorted(ws.list(SOURCES_DIR)):
                    if path.endswith(".md"):
                        s.number(path)
        ws.init_layout()
        s.mark("plan", TodoStatus.PENDING, title="Plan key questions (index.md)")
        for r in range(o.rounds):
            s.mark(f"build/r{r}", TodoStatus.PENDING, title=f"Context builder round {r + 1}")
        s.mark("write/outline", TodoStatus.PENDING, title="Outline the report (report_outline.md)")
        s.mark("write/sections", TodoStatus.PENDING, title="Write the sections")
        s.mark("write/assemble", TodoStatus.PENDING, title="Assemble and check report.md")
        self.save(s)
        await ctx.emit(
            "log",
            {
                "stage": "start",
                "message": "research workspace ready",
                "continued_from": o.continue_from,
                "files": copied,
            },
        )
        return s

    async def plan(self, state: ResearchState) -> ResearchState:
        ctx, o, ws = self.ctx, self.opts, self.ctx.workspace
        s = state.model_copy(deep=True)
        await ctx.emit(
            "stage.started",
            {"stage": "build", "rounds": o.rounds, "sources": len(s.sources), "budget": await self.budget("run/build")},
        )
        known = {kq.text.lower() for kq in s.key_questions}
        if self.question.lower() not in known:
            s.key_questions.append(
                KeyQuestion(
                    id=len(s.key_questions) + 1,
                    text=self.question,
                    note=note_path(len(s.key_questions) + 1, self.question),
                )
            )
            known.add(self.question.lower())
        want = o.key_questions - 1
        proposed: list[str] = []
        detail = None
        if want > 0 and o.plan_with_model:
            listed = "\n".join(f"- {kq.text}" for kq in s.key_questions)
            prompt = (
                f"Research question: {self.question}\nAlready planned:\n{listed}\n\n"
                f"Write {want} more short questions that a report answering it must cover. "
                f"One per line, numbered 1. to {want}. No other text. (planner)"
            )
            try:
                text = await self.call_model(
                    self.meter("build", "build", "planner"), prompt, min(o.max_tokens, 40 * want + 24), "planner"
                )
                listed_q = [q for q in parse_list(text, want, min_words=3) if q.lower() not in known]
                others = [kq.text for kq in s.key_questions]
                proposed = await asyncio.to_thread(distinct_questions, self.question, others, listed_q, self.meaning)
                if len(proposed) < len(listed_q):
                    rephrased = len(listed_q) - len(proposed)
                    await ctx.emit(
                        "log",
                        {
                            "stage": "build",
                            "step": "plan",
                            "message": f"{rephrased} proposed key question(s) dropped as rephrasings",
                        },
                    )
            except BudgetExhausted as e:
                if is_outer_scope(e.scope):
                    raise  # the tenant's (or key's) budget: the runner pauses the run, planning resumes
                s.record_stop(
                    BudgetStop(
                        stage="build",
                        where="planning stopped",
                        limit=limit_label(e.limit),
                        scope=e.scope,
                        detail=str(e),
                    )
                )
                detail = "budget exhausted before planning; the question alone is the plan"
            except EngineError as e:
                s.problems.append(f"planner: {e}")
                detail = f"the planner failed ({e}); the question alone is the plan"
        for text in proposed:
            kid = len(s.key_questions) + 1
            s.key_questions.append(KeyQuestion(id=kid, text=text, origin="model", note=note_path(kid, text)))
        for kq in s.key_questions:
            if not ws.exists(kq.note):
                ws.write(
                    kq.note,
                    f"# Evidence for Q{kq.id}: {kq.text}\n\n"
                    "Each entry: an extract and the archived source it comes from.\n\n",
                )
        s.mark(
            "plan",
            TodoStatus.DONE if detail is None else TodoStatus.PARTIAL,
            detail or f"{len(s.key_questions)} key questions, {len(proposed)} proposed by the model",
        )
        self.save(s)
        return s

    def build_exhausted(self, s: ResearchState) -> bool:
        return s.stopped("build")

    async def round(self, r: int, state: ResearchState, extra_tools: dict[str, Tool]) -> ResearchState:
        ctx, o = self.ctx, self.opts
        prefix = f"research/build/r{r}/"
        searches: list[dict[str, Any]] = []
        outcome: Outcome | None = None
        skipped = self.build_exhausted(state)
        if not skipped and o.seed_searches:
            for kq in state.key_questions:
                res: dict[str, Any] = await ctx.step(
                    f"{prefix}search/q{kq.id}", functools.partial(self.seed_search, prefix, kq)
                )
                searches.append(res)
                if res["status"] == "budget":
                    break
        if not skipped and not any(x["status"] == "budget" for x in searches):
            tools = {"search": self.search, **self.fs, **extra_tools}
            setup = AgentSetup(
                task=self.librarian_task(r, state, searches),
                meter=self.meter("build", "build", f"librarian-r{r}"),
                name=f"librarian-r{r}",
                system=LIBRARIAN_SYSTEM,
                user_system=ctx.spec.system,
                prefix=prefix,
                reminder=f"(librarian, round {r + 1} of {o.rounds}, turn {{turn}}: gather evidence into knowledge_base/)",
                set_partial=False,
            )
            outcome = await run_agent_with(
                ctx,
                setup,
                opts=self.agent_options(o.builder_steps),
                tools=tools,
                registry=self.reg,
                max_steps=o.builder_steps,
            )
        done: ResearchState = await ctx.step(
            f"{prefix}done",
            functools.partial(self.round_done, r, state, searches, outcome, skipped),
            model=ResearchState,
        )
        return done

    async def seed_search(self, prefix: str, kq: KeyQuestion) -> dict[str, Any]:
        """One metered search for a key question, a page deeper than the last; only sources not
        archived yet are written."""
        ctx, o, ws = self.ctx, self.opts, self.ctx.workspace
        k = min(50, o.results_per_search * (kq.searches + 1))
        query = kq.text[:500]
        tctx = ToolContext(
            workspace=ws, run_id=ctx.run_id, step_key=f"{prefix}search/q{kq.id}", settings=self.reg.settings
        )
        who = {"agent": "librarian-seed", "stage": "build"}
        arguments = json.dumps({"query": query, "corpus": o.corpus, "max_results": k})
        await ctx.emit(
            "tool.call", {"name": "search", "arguments": arguments, "idempotency_key": tctx.idempotency_key, **who}
        )
        meter = self.meter("build", "build", "librarian-seed")
        known = source_ids(ws)
        before = set(known.values())
        paths: list[str] = []
        status, detail = "ok", ""
        limit: str | None = None
        scope: str | None = None
        try:
            if isinstance(self.search, SearchTool):
                provider = self.search.provider(o.corpus)
                # a wider net, re-judged by meaning against the key question and the report's question
                wide = await meter.tool("search", lambda: provider.search(query, min(100, k * RERANK_POOL)))
                hits = await asyncio.to_thread(rerank, wide, query, self.question, self.meaning, k)
                if hits and o.overview_entries > 0:
                    ov = await self.entries_overview(provider, meter, query, hits, known)
                    if ov is not None:
                        hits = [*hits, ov]
                for h in hits:
                    path = known.get(h.source)
                    if path is None:
                        path = archive_source(
                            ws, title=h.title, source=h.source, text=h.text, note=f"found by search: {query}"
                        )
                        known[h.source] = path
                    paths.append(path)
            else:  # a deployment's own search tool: use it through the Tool interface
                result = await execute(
                    self.search,
                    {"query": query, "max_results": min(k, 20)},
                    tctx,
                    runner=lambda fn: meter.tool("search", fn),
                )
                if result.is_error:
                    status, detail = "error", result.content[:300]
                paths = [str(p) for p in (result.data or {}).get("saved", [])]
        except BudgetExhausted as e:
            if is_outer_scope(e.scope):
                raise  # the tenant's (or key's) budget: the runner pauses the run, the search resumes
            status, detail = "budget", str(e)
            limit, scope = limit_label(e.limit), e.scope
        except ToolError as e:
            status, detail = "error", str(e)
        paths = list(dict.fromkeys(paths))
        new = [p for p in paths if p not in before]
        content = detail or f"{len(paths)} sources, {len(new)} new, {len(paths) - len(new)} already archived"
        await ctx.emit(
            "tool.result",
            {
                "name": "search",
                "is_error": status != "ok",
                "content": content,
                "data": {"hits": len(paths), "new": new},
                **who,
            },
        )
        return {
            "kq": kq.id,
            "status": status,
            "detail": detail,
            "limit": limit,
            "scope": scope,
            "paths": paths,
            "new": new,
        }

    async def entries_overview(
        self, provider: SearchProvider, meter: Metered, query: str, hits: list[Hit], known: dict[str, str]
    ) -> Hit | None:
        """An overview of the document (module, page) the best hit comes from: its other API
        entries, most relevant to the key question and the report's question first, one line each
        (``overview``), from a second metered search within that document. A document's overview
        is archived once per run; None where the corpus cannot search within a document (a hosted
        provider) or fewer than three entries are left (then a later seed search may try again).
        Why: a module's short entries (``enum.auto``, ``random.choices``) rank below its long class
        docstrings, and held the key facts that the archived sources lacked (docs/research.md)."""
        if not isinstance(provider, LocalCorpusProvider | PythonDocsProvider):
            return None
        document = document_of(hits[0].source)
        if f"{document}#{OVERVIEW_FRAGMENT}" in known:
            return None
        have = {*known, *(h.source for h in hits)}
        # A file of a folder corpus is one entry: no overview can come of it, so no search is spent on it.
        index = await asyncio.to_thread(provider.index)
        left = await asyncio.to_thread(lambda: index.entries(document) - {entry_of(s) for s in have})
        if min(len(left), self.opts.overview_entries) < OVERVIEW_MIN_LINES:
            return None
        inside = await meter.tool("search", lambda: provider.search(query, OVERVIEW_POOL, within=document))
        ranked = await asyncio.to_thread(rerank, inside, query, self.question, self.meaning, len(inside))
        return overview(document, ranked, have, self.opts.overview_entries)

    def librarian_task(self, r: int, s: ResearchState, searches: list[dict[str, Any]]) -> str:
        lines = [f"Research question: {self.question}", "", "Key questions and their evidence notes:"]
        for kq in s.key_questions:
            lines.append(f"- Q{kq.id}. {kq.text} -> {kq.note}")
        new = sorted({p for x in searches for p in x["new"]})
        lines += [
            "",
            f"Round {r + 1}. Sources archived so far: {len(set(s.sources) | set(new))} in {SOURCES_DIR}/.",
        ]
        if new:
            lines.append("New this round: " + ", ".join(new[:6]) + (" …" if len(new) > 6 else ""))
        lines += [
            "Search for what the notes still miss, read the sources that matter, and append short evidence "
            "notes (each ending with the source path) to the notes files. Finish with a one-line summary."
        ]
        return "\n".join(lines)

    async def round_done(
        self,
        r: int,
        state: ResearchState,
        searches: list[dict[str, Any]],
        outcome: Outcome | None,
        skipped: bool,
    ) -> ResearchState:
        ctx, ws = self.ctx, self.ctx.workspace
        s = state.model_copy(deep=True)
        tid = f"build/r{r}"
        if skipped:
            s.mark(tid, TodoStatus.SKIPPED, "the build stage's budget is used up")
            self.save(s)
            return s
        by_id = {kq.id: kq for kq in s.key_questions}
        new_total = 0
        problems: list[str] = []
        for res in searches:
            kq = by_id[res["kq"]]
            if res["status"] == "ok":
                kq.searches += 1
            elif res["status"] == "budget":
                s.record_stop(
                    BudgetStop(
                        stage="build",
                        where=f"searching stopped in round {r + 1}",
                        limit=res["limit"],
                        scope=res["scope"],
                        detail=res["detail"],
                    )
                )
            else:
                problems.append(f"search for Q{kq.id}: {res['detail']}")
            for p in res["paths"]:
                if p not in kq.sources:
                    kq.sources.append(p)
                s.number(p)
            new_total += len(res["new"])
        # sources the librarian archived itself: number them and file them under the closest question
        own = [p for p in sorted(set(ws.list(SOURCES_DIR)) - set(s.sources)) if p.endswith(".md")]
        if own:
            texts = []
            for p in own:
                title, _, body = read_source(ws, p)
                texts.append(f"{title}\n{body[:1500]}")
            sims = await asyncio.to_thread(self.meaning.matrix, texts, [q.text for q in s.key_questions])
            for p, row in zip(own, sims, strict=True):
                s.key_questions[int(row.argmax())].sources.append(p)
                s.number(p)
                new_total += 1
        notes = {kq.note for kq in s.key_questions}
        for p in ws.list("knowledge_base"):
            if not p.startswith(SOURCES_DIR + "/") and p not in notes and p.endswith(".md"):
                if p not in s.librarian_notes:
                    s.librarian_notes.append(p)
        # evidence for every source not yet in its question's note: its sentences relevant to the question
        for kq in s.key_questions:
            todo = [p for p in kq.sources if p not in kq.noted and ws.exists(p)]
            if not todo:
                continue
            lines = await asyncio.to_thread(self.note_lines, kq.text, todo, s)
            for p in todo:
                if lines.get(p):
                    ws.append(kq.note, lines[p])
                kq.noted.append(p)
        status, detail = TodoStatus.DONE, f"{new_total} new sources"
        if outcome is not None:
            detail += f"; librarian: {outcome.stop_reason.value}"
            if outcome.result:
                detail += f" after {outcome.result.get('steps', 0)} turns, {outcome.result.get('tool_calls', 0)} calls"
            if outcome.status == RunStatus.BUDGET_EXHAUSTED:
                s.record_stop(
                    BudgetStop(
                        stage="build",
                        where=f"the librarian stopped in round {r + 1}",
                        limit=str((outcome.result or {}).get("exhausted_limit") or "unknown"),
                        detail=outcome.detail or "",
                    )
                )
                status = TodoStatus.PARTIAL
            elif outcome.status == RunStatus.FAILED:
                problems.append(f"librarian round {r + 1}: {outcome.detail}")
        if any(x["status"] == "budget" for x in searches):
            status = TodoStatus.PARTIAL
            detail += "; budget exhausted"
        s.problems += problems
        s.rounds_done += 1
        s.mark(tid, status, detail)
        self.save(s)
        await ctx.emit(
            "log",
            {
                "stage": "build",
                "step": f"round {r + 1}",
                "message": detail,
                "sources": len(s.sources),
                "notes": len(s.key_questions) + len(s.librarian_notes),
                "budget": await self.budget("run/build"),
            },
        )
        return s

    async def finish_build(self, state: ResearchState) -> ResearchState:
        s = state.model_copy(deep=True)
        for t in s.todos:
            if t.id.startswith("build/") and t.status == TodoStatus.PENDING:
                t.status, t.detail = TodoStatus.SKIPPED, "not reached"
        s.stage = "write"
        self.save(s)
        await self.ctx.emit(
            "stage.finished",
            {
                "stage": "build",
                "rounds": s.rounds_done,
                "key_questions": len(s.key_questions),
                "sources": len(s.sources),
                "notes": len(s.key_questions) + len(s.librarian_notes),
                "exhausted": [e for e in s.exhausted if e.startswith("build:")],
                "budget": await self.budget("run/build"),
            },
        )
        return s

    def note_lines(self, query: str, paths: list[str], s: ResearchState, per_source: int = 2) -> dict[str, str]:
        """Evidence-note entries: each source's sentences most relevant to ``query`` (only those
        relevant enough), copied from the source with its path."""
        ws = self.ctx.workspace
        out: dict[str, str] = {}
        for p in paths:
            title, _, body = read_source(ws, p)
            cands = candidates(s.number(p), p, body, title)
            picked = allocate_evidence([query], cands, self.meaning, per_source, novel_lines=0)[0]
            if picked:
                text = " ".join(x.candidate.text for x in sorted(picked, key=lambda x: cands.index(x.candidate)))
                out[p] = f"- {text} (source: {p}, {title})\n"
        return out
