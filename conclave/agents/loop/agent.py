"""One agent's loop: a model turn, its tool calls, again, until an ending (``endings``).

Each model turn is the durable step ``turn/{i}/model`` (behind the agent's prefix): the budget block
and the level it was made at are computed inside the step and recorded with it, so a replay takes
the same branch. The turn's calls run in ``calls``; the context is kept in the window by
``compaction`` before each turn.
"""

from __future__ import annotations

import functools
from typing import Any

from conclave.budgets.awareness import Level, budget_view
from conclave.core import telemetry
from conclave.core.kinds import Outcome
from conclave.core.ledger import BudgetExhausted, limit_label
from conclave.core.steering import is_outer_scope
from conclave.schema import RunStatus, StopReason
from conclave.schema.chat import EngineError, ModelNotFound

from .calls import run_calls
from .compaction import compact
from .endings import finish, max_steps_stop
from .options import ANSWER_TOOL
from .state import AgentState, Stop

__all__ = ["Agent"]


class Agent(AgentState):
    """An agent of a run and its loop (``run``)."""

    # -- budget -----------------------------------------------------------------------------
    async def _budget(self) -> tuple[str | None, str | None]:
        if not self.opts.budget_awareness:
            return None, None
        ledger = self.ctx.ledger
        if not ledger.has_caps and ledger.wall_cap_s is None:
            return None, None
        snap = await ledger.budget_snapshot()
        view = budget_view(
            snap,
            scope=self.meter.scope,
            wall_cap_s=ledger.wall_cap_s,
            wall_used_s=self.ctx.elapsed() if ledger.wall_cap_s else None,
        )
        if view is None:
            return None, None
        return view.render(), view.level.value

    # -- the model turn -----------------------------------------------------------------------
    async def _model_turn(self, i: int) -> dict[str, Any]:
        budget_text, level = await self._budget()
        final = level == Level.CRITICAL.value
        conv = self.conv
        request = conv.request(conv.messages(budget_text, final=final), final=final)
        response = await self.meter.chat(request, model=self.model, prompt_bound=conv.prompt_bound(budget_text, final))
        choice = response.choices[0]
        msg = choice.message
        calls = (
            []
            if final
            else [
                {"id": c.id, "name": c.function.name, "arguments": c.function.arguments} for c in msg.tool_calls or []
            ]
        )
        usage = response.usage.model_dump()
        await self.ctx.emit(
            "model.call",
            {
                "turn": i,
                "model": self.model,
                "usage": usage,
                "finish_reason": choice.finish_reason,
                "final": final,
                **self.who(),
            },
        )
        await self.ctx.emit(
            "agent.message",
            {
                "turn": i,
                "content": (msg.content or "")[:4000],
                "tool_calls": [{"name": c["name"], "arguments": c["arguments"][:1000]} for c in calls],
                "budget_level": level,
                **self.who(),
            },
        )
        return {
            "content": msg.content,
            "tool_calls": calls,
            "finish_reason": choice.finish_reason,
            "final": final,
            "level": level,
            "budget": budget_text,
            "usage": usage,
        }

    # -- the loop -----------------------------------------------------------------------------
    async def run(self, max_steps: int) -> Outcome:
        """The loop, inside an ``invoke_agent {name}`` span (model and tool spans nest under it)."""
        with telemetry.agent_span(
            self.setup.name, agent_id=f"{self.ctx.run_id}/{self.p or 'main'}", model=self.model
        ) as span:
            outcome = await self._run(max_steps)
            span.set_attribute("conclave.agent.stop_reason", outcome.stop_reason.value)
            return outcome

    async def _run(self, max_steps: int) -> Outcome:
        ctx = self.ctx
        conv = self.conv
        if self.opts.layout:
            await ctx.step(f"{self.p}layout", self._layout)
        try:
            for i in range(max_steps):
                if ctx.cancel_requested.is_set():
                    raise Stop(StopReason.CANCELLED, RunStatus.CANCELLED, "cancel requested")
                await compact(self, i)
                try:
                    turn: dict[str, Any] = await ctx.step(
                        f"{self.p}turn/{i}/model", functools.partial(self._model_turn, i)
                    )
                except (EngineError, ModelNotFound) as e:
                    raise Stop(StopReason.ERROR, RunStatus.FAILED, f"model call failed: {e}") from e
                conv.add_turn(turn)
                self.progress.level = turn.get("level")
                if turn["content"] and self.setup.set_partial:
                    ctx.partial_output = turn["content"]
                calls = turn["tool_calls"]
                if turn["final"] or not calls:
                    stop = StopReason.LENGTH if turn["finish_reason"] == "length" else StopReason.END_TURN
                    detail = "answered at CRITICAL budget level" if turn["final"] else None
                    raise Stop(stop, RunStatus.SUCCEEDED, detail, turn["content"] or conv.partial())
                ok = await run_calls(self, i, calls)
                conv.add_results(turn, ok)
                for c in calls:
                    self.progress.tool_counts[c["name"]] += 1
                for c, r in zip(calls, ok, strict=True):
                    if c["name"] == ANSWER_TOOL and self.answer_tool and not r["is_error"]:
                        answer = str(r["data"].get("answer", ""))
                        if self.setup.set_partial:
                            ctx.partial_output = answer
                        raise Stop(StopReason.END_TURN, RunStatus.SUCCEEDED, None, answer)
                self.progress.check_stuck(ok, calls)
            raise max_steps_stop(max_steps, conv.partial())
        except Stop as s:
            return await finish(self, s)
        except BudgetExhausted as e:
            if is_outer_scope(e.scope):
                raise  # the tenant's (or key's) budget: the runner pauses the run
            return await finish(
                self,
                Stop(StopReason.BUDGET_EXHAUSTED, RunStatus.BUDGET_EXHAUSTED, str(e), conv.partial()),
                exhausted=limit_label(e.limit),
            )

    async def _layout(self) -> bool:
        self.ctx.workspace.init_layout()
        return True
