"""The ``research`` run kind: a context builder fills a file-system knowledge base, a report writer
turns it into a cited ``report.md`` (the FS-Researcher workflow, on Conclave's durable steps).

Stage 1, the context builder (``run/build``). A planner call proposes key questions; with the
question itself they form the topic tree in ``index.md``. Then, in rounds, each key question is
searched (a deterministic, metered search call, so sources get archived whatever the model can do;
each round digs one page deeper and skips sources already archived), and a librarian agent with a
fresh context searches, reads and appends evidence notes to ``knowledge_base/``. After each round the
workflow extracts evidence for every new source into the key question's note, citing the archived
file. The number of rounds and the stage's share of the budget are the test-time-scaling knob.

Stage 2, the report writer (``run/write``). An outline call titles one section per key question with
evidence (``report_outline.md``); the sections are written in parallel, each by its own agent with
only the file tools and its own scope (``run/write/s{n}``), or by an ensemble when one is chosen;
then ``report.md`` is assembled with numbered citations, a references list mapping each number to a
file in ``knowledge_base/sources/``, and checked (every citation resolves, no empty section).

What does not depend on the model. A 135M model cannot plan, search or write reliably, so the
workflow never needs it to: the question is always a key question, searches run per key question,
evidence extracts are copied from the sources (never invented), and a section whose writer failed,
ran out of budget or wrote nothing usable is written from its evidence. Model output is used where
it exists and is checked (citations to unknown numbers are dropped). Every call is metered.

Durability. Every unit is a step under ``research/`` and returns the workflow's checklist
(``ResearchState``), so the run's checkpoint says which to-dos are done, partial, skipped or
failed; a resumed run replays committed steps (no model call, tool call or search is repeated,
no source is gathered twice) and continues with the first that did not commit.

Budgets. Without ``scopes`` in the run's budget, ``build`` gets ``build_share`` of every limit and
``write`` the rest; each section gets an equal share of ``write``. When stage 1 runs out, stage 2
still writes from what exists; the run ends ``succeeded`` with a detail, or ``budget_exhausted``
only if no section could be written.

Dig deeper. ``continue_from=<run id>`` copies that run's committed workspace and checklist and goes on
from there with this run's budget: known key questions are searched one page deeper, sources already
archived are not fetched again, and the report is rewritten.

Ensembles. With ``section_ensemble`` (or the task's ``ensemble``) each section is drafted by
``conclave.agents.ensemble.draft_with_ensemble`` (see ``EnsembleDrafter``) instead of a writer agent;
the option is refused at submission where that module is not installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import json
import re
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from conclave.budgets.caps import install_budget
from conclave.core.context import Metered, RunContext
from conclave.core.kinds import Outcome, RunKind
from conclave.core.ledger import BudgetExhausted, limit_label
from conclave.core.money import PICO
from conclave.schema import Budget, RunStatus, StopReason, SubBudget, TaskSpec
from conclave.schema.chat import ChatMessage, ChatRequest, EngineError, ModelNotFound
from conclave.tools._text import archive_source
from conclave.tools.base import Tool, ToolContext, ToolError, execute
from conclave.tools.registry import ToolRegistry, default_registry
from conclave.tools.search import PYTHON_DOCS, SearchTool

from .loop import AgentOptions, AgentSetup, run_agent_with
from .research_state import (
    SOURCES_DIR,
    STATE_PATH,
    KeyQuestion,
    ResearchState,
    SectionState,
    TodoStatus,
    assemble_report,
    check_report,
    clean_citations,
    evidence_extract,
    note_path,
    parse_list,
    read_source,
    render_index,
    render_outline,
    source_ids,
    strip_scaffolding,
    terms,
)

__all__ = [
    "DraftRequest",
    "EnsembleDrafter",
    "EvidenceItem",
    "KIND",
    "ResearchOptions",
    "check",
    "ensemble_drafter",
    "run",
    "run_research",
    "stage_budget",
]

ENSEMBLE_MODULE = "conclave.agents.ensemble"

LIBRARIAN_SYSTEM = (
    "You are the librarian of a research team. You gather evidence into a knowledge base of files "
    "that a writer will use. Search for sources (each result is saved under knowledge_base/sources/), "
    "read the useful ones, and append short evidence notes to the notes files in knowledge_base/, each "
    "note ending with the path of the source it comes from. Do not write the report. "
)
WRITER_SYSTEM = (
    "You write one section of a research report from the evidence you are given and the files of "
    "the workspace. Use only that evidence. Cite every claim with its source number in square brackets, "
    "like [2]. "
)


class ResearchOptions(BaseModel):
    """Options of the ``research`` kind (``TaskSpec.options``)."""

    model_config = ConfigDict(extra="forbid")

    corpus: str | None = Field(
        default=PYTHON_DOCS,
        max_length=100,
        description="Local corpus searched (python-docs, or one configured in tools.search.corpora); "
        "null for the deployment's hosted search provider.",
    )
    rounds: int = Field(default=2, ge=1, le=20, description="Context-builder rounds (fresh librarian each).")
    key_questions: int = Field(default=3, ge=1, le=12, description="Key questions, the question included.")
    results_per_search: int = Field(default=3, ge=1, le=20, description="Sources per key question per round.")
    build_share: float = Field(
        default=0.6, gt=0, lt=1, description="Share of every budget limit for stage 1 when the budget has no scopes."
    )
    max_sections: int = Field(default=4, ge=1, le=20, description="Sections of the report at most.")
    parallel_sections: int = Field(default=4, ge=1, le=32, description="Sections written at once.")
    max_tokens: int = Field(default=384, ge=16, le=100_000, description="Completion tokens per model call.")
    temperature: float | None = Field(default=None, ge=0, le=2)
    seed: int | None = None
    tool_choice: Literal["auto", "required"] = Field(
        default="required",
        description="'required': every agent turn is a tool call and agents end with final_answer, which "
        "small models need and large ones handle; 'auto' lets the model answer in plain text.",
    )
    min_tool_turns: int = Field(default=1, ge=0, le=100, description="With 'required': turns before final_answer.")
    builder_steps: int = Field(default=5, ge=1, le=200, description="Model turns of one librarian round.")
    writer_steps: int = Field(default=3, ge=1, le=200, description="Model turns of one section writer.")
    plan_with_model: bool = Field(default=True, description="Ask the model for key questions and section titles.")
    seed_searches: bool = Field(default=True, description="Search every key question each round, deterministically.")
    section_min_chars: int = Field(
        default=80, ge=1, le=10_000, description="Shorter model drafts are replaced by the section's evidence."
    )
    budget_awareness: bool = True
    continue_from: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Dig deeper: start from this finished run's workspace and checklist.",
    )
    section_ensemble: str | dict[str, Any] | None = Field(
        default=None, description="Draft each section with this ensemble (name or config) instead of an agent."
    )


# -- the ensemble interface ------------------------------------------------------------------------


class EvidenceItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int = Field(ge=1, description="The citation number to use.")
    path: str = Field(description="The archived source, under knowledge_base/sources/.")
    extract: str


class DraftRequest(BaseModel):
    """What an ensemble drafting a section is given."""

    model_config = ConfigDict(extra="forbid")

    ensemble: str | dict[str, Any]
    model: str = Field(description="The run's model, for ensembles whose members do not name one.")
    question: str
    title: str
    evidence: list[EvidenceItem]
    instructions: str
    max_tokens: int


class EnsembleDrafter(Protocol):
    """``conclave.agents.ensemble.draft_with_ensemble``: draft one section with an ensemble.

    It is called inside one durable step of the research run (so it must not open steps itself),
    must make every model call through ``meter`` (the section's scope, ``run/write/s{n}``), and
    returns the section's markdown body citing ``[n]`` numbers from ``request.evidence``. It may raise
    ``BudgetExhausted`` or ``EngineError``; the section is then written from its evidence.
    """

    def __call__(self, ctx: RunContext, request: DraftRequest, *, meter: Metered) -> Awaitable[str]: ...


def ensemble_drafter() -> EnsembleDrafter | None:
    """The ensemble package's drafting function, when that package is installed."""
    try:
        module = importlib.import_module(ENSEMBLE_MODULE)
    except ImportError:
        return None
    fn = getattr(module, "draft_with_ensemble", None)
    return fn if callable(fn) else None


# -- checks and budgets ------------------------------------------------------------------------------


def _spec_error(field: str, message: str) -> ValueError:
    err = ValueError(message)
    err.field = field  # type: ignore[attr-defined]
    return err


def check(spec: TaskSpec) -> None:
    """Submission-time checks beyond the options model: tools, corpus, scopes, ensemble."""
    opts = ResearchOptions.model_validate(spec.options)
    reg = default_registry()
    reg.check(spec.tools)
    search = reg.settings.search
    if opts.corpus is not None and opts.corpus != PYTHON_DOCS and opts.corpus not in search.corpora:
        known = ", ".join(sorted({PYTHON_DOCS, *search.corpora}))
        raise _spec_error("options.corpus", f"unknown corpus {opts.corpus!r}; available: {known}")
    if opts.corpus is None and search.provider == "local":
        raise _spec_error("options.corpus", "corpus null means the hosted search provider, and none is configured")
    scopes = set(spec.budget.scopes) if spec.budget else set()
    if scopes and not {"build", "write"} <= scopes:
        raise _spec_error(
            "budget.scopes",
            f"a research run splits its budget into the scopes 'build' and 'write'; got {sorted(scopes)}",
        )
    if (opts.section_ensemble or spec.ensemble) and ensemble_drafter() is None:
        raise _spec_error(
            "options.section_ensemble",
            f"drafting sections with an ensemble needs {ENSEMBLE_MODULE}.draft_with_ensemble, "
            "which this deployment does not have",
        )


def stage_budget(budget: Budget | None, build_share: float, sections: int = 0) -> Budget | None:
    """The run's budget with the stage scopes (``build``/``write`` by ``build_share`` unless given)
    and, once the outline is known, one equal share of ``write`` per section (``s1``…)."""
    if budget is None or budget.is_empty():
        return None
    scopes = dict(budget.scopes)
    if "build" not in scopes and "write" not in scopes:
        scopes["build"] = SubBudget(share=build_share)
        scopes["write"] = SubBudget(share=round(1 - build_share, 9))
    if sections and "write" in scopes and not scopes["write"].scopes:
        share = 1.0 / sections
        scopes["write"] = scopes["write"].model_copy(
            update={"scopes": {f"s{n}": SubBudget(share=share) for n in range(1, sections + 1)}}
        )
    return budget.model_copy(update={"scopes": scopes})


# -- the workflow ------------------------------------------------------------------------------------


@dataclass
class _Written:
    """How a section's drafter ended (an agent's outcome, or the ensemble's)."""

    status: RunStatus
    stop_reason: StopReason
    detail: str | None
    output: str | None
    origin: str


class _Fatal(Exception):
    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.detail)
        self.outcome = outcome


class _Workflow:
    def __init__(self, ctx: RunContext, opts: ResearchOptions, reg: ToolRegistry) -> None:
        self.ctx = ctx
        self.opts = opts
        self.reg = reg
        self.model = ctx.model
        self.question = ctx.spec.input_text().strip()
        self.fs: dict[str, Tool] = {n: reg.build(n) for n in reg.resolve(["fs"])}
        self.search = reg.build("search")
        if isinstance(self.search, SearchTool) and opts.corpus is not None:
            self.search.cfg = self.search.cfg.model_copy(update={"default_corpus": opts.corpus})
        self.ensemble = opts.section_ensemble or ctx.spec.ensemble
        self.drafter = ensemble_drafter() if self.ensemble else None
        self.sem = asyncio.Semaphore(opts.parallel_sections)

    # -- helpers ---------------------------------------------------------------------------------
    def meter(self, scope: str, stage: str, agent: str) -> Metered:
        return self.ctx.scoped(scope, stage=stage, agent=agent)

    def agent_options(self, max_steps: int) -> AgentOptions:
        o = self.opts
        return AgentOptions(
            max_tokens=o.max_tokens,
            temperature=o.temperature,
            seed=o.seed,
            max_steps=max_steps,
            tool_choice=o.tool_choice,
            min_tool_turns=min(o.min_tool_turns, max_steps - 1),
            budget_awareness=o.budget_awareness,
        )

    async def budget(self, scope: str) -> dict[str, dict[str, float]]:
        """Used (and, where capped, left) per limit of one ledger scope, for stage events."""
        snap = await self.ctx.ledger.snapshot()
        used: dict[str, float] = {}
        left: dict[str, float] = {}
        for (sc, limit), v in snap.used.items():
            if sc == scope and limit != "tool:*":
                used[limit_label(limit)] = v / PICO if limit == "usd" else v
        for (sc, limit), _cap in snap.caps.items():
            if sc == scope:
                room = snap.left(sc, limit) or 0
                left[limit_label(limit)] = room / PICO if limit == "usd" else room
        return {"used": used, "left": left}

    def save(self, s: ResearchState) -> None:
        ws = self.ctx.workspace
        ws.write(STATE_PATH, s.model_dump_json(indent=2))
        previous = ws.read("index.md") if ws.exists("index.md") else ""
        ws.write("index.md", render_index(s, previous))

    async def call_model(self, meter: Metered, prompt: str, max_tokens: int, who: str) -> str:
        """One planning call (planner, outliner). ``ModelNotFound`` is fatal; the caller handles a
        refused budget or a failed call by falling back."""
        request = ChatRequest(
            model=self.model,
            messages=[ChatMessage(role="user", content=prompt)],
            max_tokens=max_tokens,
            temperature=self.opts.temperature,
            seed=self.opts.seed,
        )
        try:
            response = await meter.chat(request, model=self.model)
        except ModelNotFound as e:
            raise _Fatal(Outcome(status=RunStatus.FAILED, stop_reason=StopReason.ERROR, detail=str(e))) from e
        choice = response.choices[0]
        await self.ctx.emit(
            "model.call",
            {
                "model": self.model,
                "agent": who,
                "stage": meter.stage,
                "usage": response.usage.model_dump(),
                "finish_reason": choice.finish_reason,
            },
        )
        return choice.message.content or ""

    # -- the run -----------------------------------------------------------------------------------
    async def run(self, extra_tools: dict[str, Tool]) -> Outcome:
        ctx, o = self.ctx, self.opts
        if o.continue_from and not ctx.committed("research/start"):
            prev = await ctx.store.get(o.continue_from)
            problem = None
            if o.continue_from == ctx.run_id:
                problem = "a run cannot continue itself"
            elif prev is None:
                problem = f"no run {o.continue_from!r} to continue"
            elif not prev.status.terminal:
                problem = f"run {o.continue_from} is still {prev.status.value}; continue it once it has finished"
            if problem:
                return Outcome(status=RunStatus.FAILED, stop_reason=StopReason.ERROR, detail=problem)
        await install_budget(ctx.ledger, stage_budget(ctx.spec.budget, o.build_share))
        try:
            state = await ctx.step("research/start", self.start, model=ResearchState)
            state = await ctx.step("research/build/plan", functools.partial(self.plan, state), model=ResearchState)
            for r in range(o.rounds):
                if ctx.cancel_requested.is_set():
                    return self.cancelled(state)
                state = await self.round(r, state, extra_tools)
            state = await ctx.step(
                "research/build/finish", functools.partial(self.finish_build, state), model=ResearchState
            )
            if ctx.cancel_requested.is_set():
                return self.cancelled(state)
            state = await ctx.step(
                "research/write/outline", functools.partial(self.outline, state), model=ResearchState
            )
            await install_budget(ctx.ledger, stage_budget(ctx.spec.budget, o.build_share, len(state.sections)))
            results = await asyncio.gather(
                *(self.section(sec, state) for sec in state.sections), return_exceptions=True
            )
            for res in results:  # every sibling has finished (and committed) before anything is raised
                if isinstance(res, BaseException):
                    raise res
            written = [r for r in results if isinstance(r, SectionState)]
            state = await ctx.step(
                "research/write/assemble", functools.partial(self.assemble, state, written), model=ResearchState
            )
        except _Fatal as f:
            return f.outcome
        return self.outcome(state)

    def cancelled(self, s: ResearchState) -> Outcome:
        return Outcome(
            output=self.ctx.partial_output,
            status=RunStatus.CANCELLED,
            stop_reason=StopReason.CANCELLED,
            detail=f"cancelled during stage {s.stage}",
        )

    # -- stage 1: the context builder ------------------------------------------------------------
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
                proposed = [q for q in parse_list(text, want, min_words=3) if q.lower() not in known]
            except BudgetExhausted as e:
                s.exhausted.append(f"build: planning stopped, {e}")
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
        return any(e.startswith("build:") for e in s.exhausted)

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
        try:
            if isinstance(self.search, SearchTool):
                provider = self.search.provider(o.corpus)
                hits = await meter.tool("search", lambda: provider.search(query, k))
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
            status, detail = "budget", str(e)
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
        return {"kq": kq.id, "status": status, "detail": detail, "paths": paths, "new": new}

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
                s.exhausted.append(f"build: searching stopped in round {r + 1}, {res['detail']}")
            else:
                problems.append(f"search for Q{kq.id}: {res['detail']}")
            for p in res["paths"]:
                if p not in kq.sources:
                    kq.sources.append(p)
                s.number(p)
            new_total += len(res["new"])
        # sources the librarian archived itself: number them and file them under the closest question
        for p in sorted(set(ws.list(SOURCES_DIR)) - set(s.sources)):
            if not p.endswith(".md"):
                continue
            title, _, body = read_source(ws, p)
            words = terms(title + " " + body[:2000])
            best = max(s.key_questions, key=lambda q: (len(terms(q.text) & words), -q.id))
            best.sources.append(p)
            s.number(p)
            new_total += 1
        notes = {kq.note for kq in s.key_questions}
        for p in ws.list("knowledge_base"):
            if not p.startswith(SOURCES_DIR + "/") and p not in notes and p.endswith(".md"):
                if p not in s.librarian_notes:
                    s.librarian_notes.append(p)
        # evidence extracts for every source not yet in its question's note
        for kq in s.key_questions:
            for p in kq.sources:
                if p in kq.noted or not ws.exists(p):
                    continue
                title, _, body = read_source(ws, p)
                ws.append(kq.note, f"- {evidence_extract(body, kq.text)} (source: {p}, {title})\n")
                kq.noted.append(p)
        status, detail = TodoStatus.DONE, f"{new_total} new sources"
        if outcome is not None:
            detail += f"; librarian: {outcome.stop_reason.value}"
            if outcome.result:
                detail += f" after {outcome.result.get('steps', 0)} turns, {outcome.result.get('tool_calls', 0)} calls"
            if outcome.status == RunStatus.BUDGET_EXHAUSTED:
                s.exhausted.append(f"build: the librarian stopped in round {r + 1}, {outcome.detail}")
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

    # -- stage 2: the report writer ----------------------------------------------------------------
    async def outline(self, state: ResearchState) -> ResearchState:
        ctx, o, ws = self.ctx, self.opts, self.ctx.workspace
        s = state.model_copy(deep=True)
        await ctx.emit("stage.started", {"stage": "write", "budget": await self.budget("run/write")})
        chosen = [kq for kq in s.key_questions if kq.sources][: o.max_sections]
        plans: list[tuple[str, int | None, list[str]]] = [(kq.text, kq.id, kq.sources) for kq in chosen]
        if not plans and s.sources:
            plans = [("Findings", None, s.sources[:8])]
        titles = [p[0] for p in plans]
        detail = None
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
                headings = parse_list(text, len(titles), min_words=1, max_chars=90)
                titles = [re.sub(r"[\[\]]", "", h) for h in headings] + titles[len(headings) :]
            except BudgetExhausted as e:
                detail = f"no budget for titles ({e}); the key questions are the headings"
            except EngineError as e:
                s.problems.append(f"outliner: {e}")
                detail = f"the outliner failed ({e}); the key questions are the headings"
        s.sections = [
            SectionState(
                n=n,
                title=titles[n - 1],
                path=f"sections/s{n}.md",
                key_question=kid,
                sources=[s.number(p) for p in paths[:6]],
            )
            for n, (_, kid, paths) in enumerate(plans, 1)
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

    def evidence(self, sec: SectionState, s: ResearchState, max_chars: int = 240) -> list[EvidenceItem]:
        ws = self.ctx.workspace
        kq = next((k for k in s.key_questions if k.id == sec.key_question), None)
        query = kq.text if kq else self.question
        out = []
        for n in sec.sources:
            path = s.sources[n - 1]
            if ws.exists(path):
                _, _, body = read_source(ws, path)
                out.append(EvidenceItem(n=n, path=path, extract=evidence_extract(body, query, max_chars)))
        return out

    def writer_task(self, sec: SectionState, s: ResearchState) -> str:
        lines = [
            f"Research question: {self.question}",
            f"Write section {sec.n} of the report: {sec.title}",
            "",
            "Evidence (cite it by number):",
        ]
        lines += [f"[{e.n}] {e.extract}" for e in self.evidence(sec, s)[:4]]
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
            written: _Written
            if self.drafter is not None and self.ensemble is not None:
                drafted: dict[str, Any] = await ctx.step(
                    f"{prefix}draft", functools.partial(self.draft, sec, state, meter)
                )
                written = _Written(
                    RunStatus(drafted["status"]),
                    StopReason(drafted["stop_reason"]),
                    drafted["detail"],
                    None,
                    "ensemble",
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
                written = _Written(out.status, out.stop_reason, out.detail, out.output, "model")
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
            evidence=self.evidence(sec, s, 600),
            instructions=WRITER_SYSTEM,
            max_tokens=self.opts.max_tokens,
        )
        try:
            text = await self.drafter(self.ctx, request, meter=meter)
        except BudgetExhausted as e:
            return {"status": RunStatus.BUDGET_EXHAUSTED.value, "stop_reason": "budget_exhausted", "detail": str(e)}
        except EngineError as e:
            return {"status": RunStatus.FAILED.value, "stop_reason": "error", "detail": f"ensemble failed: {e}"}
        self.ctx.workspace.write(sec.path, f"# {sec.title}\n\n{text.strip()}\n")
        return {"status": RunStatus.SUCCEEDED.value, "stop_reason": "end_turn", "detail": None}

    async def check_section(self, sec: SectionState, s: ResearchState, written: _Written) -> SectionState:
        """Take the drafter's text where it is usable, else the section's evidence; keep only
        citations that resolve; make sure the section cites at least one source it has."""
        ctx, o, ws = self.ctx, self.opts, self.ctx.workspace
        out = sec.model_copy(deep=True)
        prompt = self.writer_task(sec, s)
        body = strip_scaffolding(_strip_heading(ws.read(sec.path)), prompt) if ws.exists(sec.path) else ""
        origin = written.origin + "-file"
        if len(body) < o.section_min_chars:
            answer = strip_scaffolding(_strip_heading(written.output or ""), prompt)
            if len(answer) >= o.section_min_chars:
                body, origin = answer, written.origin + "-answer"
            else:
                body, origin = "", "evidence"
        valid = set(range(1, len(s.sources) + 1))
        body, kept, dropped = clean_citations(body, valid)
        evidence = self.evidence(sec, s)
        if not body.strip():
            kq = next((k for k in s.key_questions if k.id == sec.key_question), None)
            intro = f"What the archived sources say about: {kq.text if kq else self.question}"
            body = intro + "\n\n" + "\n".join(f"- {e.extract} [{e.n}]" for e in evidence)
            kept = [e.n for e in evidence]
        elif not kept and evidence:
            body += "\n\nEvidence: " + " ".join(f"{e.extract} [{e.n}]" for e in evidence[:2])
            kept = [e.n for e in evidence[:2]]
            origin += "+evidence"
        ws.write(sec.path, f"# {sec.title}\n\n{body.strip()}\n")
        out.origin = origin
        out.chars = len(body.strip())
        out.citations = sorted(set(kept))
        notes = []
        if written.status != RunStatus.SUCCEEDED:
            notes.append(f"drafter {written.stop_reason.value}: {written.detail}")
        if dropped:
            notes.append(f"dropped citations to unknown sources {sorted(set(dropped))}")
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
        parts = [(sec.title, _strip_heading(ws.read(sec.path))) for sec in s.sections if ws.exists(sec.path)]
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
            if sec.detail and "budget" in sec.detail:
                s.exhausted.append(f"write: section {sec.n}, {sec.detail}")
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

    def outcome(self, s: ResearchState) -> Outcome:
        ws = self.ctx.workspace
        report = ws.read("report.md") if ws.exists("report.md") else None
        self.ctx.partial_output = report
        chk = s.report
        result: dict[str, Any] = {
            "report": "report.md",
            "sources": len(s.sources),
            "key_questions": len(s.key_questions),
            "rounds": s.rounds_done,
            "sections": [sec.model_dump(mode="json") for sec in s.sections],
            "check": chk.model_dump(mode="json") if chk else None,
            "todos": [t.model_dump(mode="json") for t in s.todos],
            "exhausted": s.exhausted,
            "problems": s.problems,
            "continued_from": s.continued_from,
        }
        notes = s.exhausted + s.problems
        detail = "; ".join(notes)[:2000] or None
        if chk is not None and chk.ok:
            return Outcome(output=report, result=result, status=RunStatus.SUCCEEDED, detail=detail)
        if s.exhausted:
            limit = re.search(r"budget exhausted: (\S+)", " ".join(s.exhausted))
            result["exhausted_limit"] = limit.group(1) if limit else None
            return Outcome(
                output=report,
                result=result,
                status=RunStatus.BUDGET_EXHAUSTED,
                stop_reason=StopReason.BUDGET_EXHAUSTED,
                detail=detail or "budget exhausted before anything could be written",
            )
        problem = "; ".join(chk.unresolved + chk.empty_sections) if chk and chk.sections else "no section written"
        return Outcome(
            output=report,
            result=result,
            status=RunStatus.FAILED,
            stop_reason=StopReason.ERROR,
            detail=f"the report failed its check: {problem}" + (f" ({detail})" if detail else ""),
        )


def _strip_heading(text: str) -> str:
    """A section's body: the text without a leading markdown heading line."""
    text = text.strip()
    if text.startswith("#"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
    return text.strip()


async def run_research(ctx: RunContext, *, registry: ToolRegistry | None = None) -> Outcome:
    """Run the research workflow for ``ctx`` with the tools of ``registry`` (the process default
    if None). The task's own ``tools`` are added to the librarian's search and file tools."""
    opts = ResearchOptions.model_validate(ctx.spec.options)
    reg = registry or default_registry()
    async with contextlib.AsyncExitStack() as stack:
        try:
            extra = await stack.enter_async_context(reg.open(ctx.spec.tools))
        except Exception as e:  # an MCP server that does not start, an unknown tool
            return Outcome(
                status=RunStatus.FAILED, stop_reason=StopReason.ERROR, detail=f"could not open the tools: {e}"
            )
        return await _Workflow(ctx, opts, reg).run(extra)
    raise AssertionError("unreachable")  # pragma: no cover


async def run(ctx: RunContext) -> Outcome:
    return await run_research(ctx)


KIND = RunKind(
    name="research",
    run=run,
    options=ResearchOptions,
    description="A context builder gathers cited evidence into the workspace; a report writer turns it into report.md.",
    check=check,
)
