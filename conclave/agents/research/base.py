"""What both stages of the research workflow share: the run's context, options and tools, the
similarity model, meters per stage and agent, the checklist's save, and planning calls."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from conclave.core.context import Metered, RunContext
from conclave.core.kinds import Outcome
from conclave.core.ledger import limit_label
from conclave.schema import RunStatus, StopReason
from conclave.schema.chat import ChatMessage, ChatRequest, ModelNotFound
from conclave.schema.money import PICO
from conclave.tools.base import Tool
from conclave.tools.registry import ToolRegistry
from conclave.tools.search import SearchTool

from ..ensemble import draft_with_ensemble
from ..loop import AgentOptions
from .evidence import Meaning
from .options import ResearchOptions
from .state import STATE_PATH, ResearchState, render_index

__all__ = ["Fatal", "Workflow", "Written", "strip_heading"]


@dataclass
class Written:
    """How a section's drafter ended (an agent's outcome, or the ensemble's)."""

    status: RunStatus
    stop_reason: StopReason
    detail: str | None
    output: str | None
    origin: str
    limit: str | None = None  #: the budget limit that stopped it (BudgetExhausted.limit), if one did
    scope: str | None = None


class Fatal(Exception):
    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.detail)
        self.outcome = outcome


class Workflow:
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
        self.drafter = draft_with_ensemble if self.ensemble else None
        self.sem = asyncio.Semaphore(opts.parallel_sections)
        self.meaning = Meaning()

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
            raise Fatal(Outcome(status=RunStatus.FAILED, stop_reason=StopReason.ERROR, detail=str(e))) from e
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


def strip_heading(text: str) -> str:
    """A section's body: the text without a leading markdown heading line."""
    text = text.strip()
    if text.startswith("#"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
    return text.strip()
