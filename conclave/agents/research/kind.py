"""The ``research`` kind: submission checks, the budget split by stage, the sequence of steps, and
how the checklist maps to the run's outcome."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from typing import Any

from conclave.budgets.caps import install_budget
from conclave.core.context import RunContext
from conclave.core.kinds import Outcome, RunKind
from conclave.schema import Budget, RunStatus, StopReason, SubBudget, TaskSpec
from conclave.tools.base import Tool
from conclave.tools.registry import ToolRegistry, default_registry
from conclave.tools.search import PYTHON_DOCS, known_corpora

from ..drafting import EnsembleDrafter
from ..ensemble import draft_with_ensemble
from .base import Fatal
from .build import ContextBuilder
from .options import ResearchOptions
from .state import ResearchState, SectionState
from .write import ReportWriter

__all__ = ["KIND", "ResearchWorkflow", "check", "ensemble_drafter", "run", "run_research", "stage_budget"]


def ensemble_drafter() -> EnsembleDrafter:
    """What drafts a section when the task names an ensemble."""
    return draft_with_ensemble


# -- checks and budgets ------------------------------------------------------------------------------


def _spec_error(field: str, message: str) -> ValueError:
    err = ValueError(message)
    err.field = field  # type: ignore[attr-defined]
    return err


def check(spec: TaskSpec) -> None:
    """Submission-time checks beyond the options model: tools, corpus, scopes."""
    opts = ResearchOptions.model_validate(spec.options)
    reg = default_registry()
    reg.check(spec.tools)
    search = reg.settings.search
    folders = known_corpora(search)
    if opts.corpus is not None and opts.corpus != PYTHON_DOCS and opts.corpus not in folders:
        known = ", ".join(sorted({PYTHON_DOCS, *folders}))
        raise _spec_error("options.corpus", f"unknown corpus {opts.corpus!r}; available: {known}")
    if opts.corpus is None and search.provider == "local":
        raise _spec_error("options.corpus", "corpus null means the hosted search provider, and none is configured")
    scopes = set(spec.budget.scopes) if spec.budget else set()
    if scopes and not {"build", "write"} <= scopes:
        raise _spec_error(
            "budget.scopes",
            f"a research run splits its budget into the scopes 'build' and 'write'; got {sorted(scopes)}",
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


class ResearchWorkflow(ContextBuilder, ReportWriter):
    """Both stages, run as one sequence of durable steps."""

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
        except Fatal as f:
            return f.outcome
        return self.outcome(state)

    def cancelled(self, s: ResearchState) -> Outcome:
        return Outcome(
            output=self.ctx.partial_output,
            status=RunStatus.CANCELLED,
            stop_reason=StopReason.CANCELLED,
            detail=f"cancelled during stage {s.stage}",
        )

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
            "exhausted_limit": s.stops[0].limit if s.stops else None,
            "stops": [st.model_dump(mode="json") for st in s.stops],
            "problems": s.problems,
            "continued_from": s.continued_from,
        }
        notes = s.exhausted + s.problems
        detail = "; ".join(notes)[:2000] or None
        if chk is not None and chk.ok:
            return Outcome(output=report, result=result, status=RunStatus.SUCCEEDED, detail=detail)
        if s.stops:
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
        return await ResearchWorkflow(ctx, opts, reg).run(extra)
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
