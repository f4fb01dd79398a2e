"""How an agent stops: the reasons, the max-steps ending, the answer ensemble, the final record.

``end_turn`` (the model answered), ``max_steps`` (succeeded with the last message as a partial answer
when the model said something, failed when it never did), ``budget_exhausted``, ``cancelled``,
``error`` (the model failed), ``stuck`` (the same call with the same result, or the same error,
``stuck_repeats`` times: failed; detected by ``state.Progress``). Every ending but a cancel commits an
``agent.stopped`` step.
"""

from __future__ import annotations

from conclave.core.kinds import Outcome
from conclave.core.ledger import BudgetExhausted
from conclave.core.steering import is_outer_scope
from conclave.schema import RunStatus, StopReason
from conclave.schema.chat import EngineError

from .state import AgentState, Stop

__all__ = ["finish", "max_steps_stop"]


def max_steps_stop(max_steps: int, partial: str | None) -> Stop:
    if partial is None:
        detail = f"stopped after {max_steps} model turns without an answer"
        return Stop(StopReason.MAX_STEPS, RunStatus.FAILED, detail)
    detail = (
        f"stopped after {max_steps} model turns; the output is the agent's last message, a partial answer, "
        "not a final one"
    )
    return Stop(StopReason.MAX_STEPS, RunStatus.SUCCEEDED, detail, partial)


async def _ensemble_answer(a: AgentState, s: Stop) -> Stop:
    """With ``answer_ensemble``, the final answer comes from that ensemble over the whole
    conversation (one durable step, metered in the ``answer`` scope); the agent's own answer
    stays when the ensemble cannot run within budget."""
    ens = a.opts.answer_ensemble
    if ens is None or s.reason is not StopReason.END_TURN:
        return s
    from conclave.agents.ensemble import answer_with_ensemble

    meter = a.ctx.scoped(f"{a.setup.name}-answer", stage="answer", agent=f"{a.setup.name}-ensemble")

    async def answer() -> str:
        return await answer_with_ensemble(
            ens, a.conv.messages(final=True), meter, default_model=a.model, max_tokens=a.opts.max_tokens
        )

    try:
        text = await a.ctx.step(f"{a.p}answer/ensemble", answer)
    except (BudgetExhausted, EngineError) as e:
        if isinstance(e, BudgetExhausted) and is_outer_scope(e.scope):
            raise
        detail = f"kept the agent's own answer: the answer ensemble could not run ({e})"
        return Stop(s.reason, s.status, detail, s.output)
    return Stop(s.reason, s.status, s.detail or "answered by the answer ensemble", text or s.output)


async def finish(a: AgentState, s: Stop, exhausted: str | None = None) -> Outcome:
    """The run's outcome from how it stopped, after the ``agent.stopped`` step (none when cancelled)."""
    ctx = a.ctx
    s = await _ensemble_answer(a, s)
    output = s.output if s.output is not None else a.conv.partial()
    if output is not None and a.setup.set_partial:
        ctx.partial_output = output
    turns = a.conv.turns
    result = {
        "steps": len(turns),
        "tool_calls": sum(a.progress.tool_counts.values()),
        "tools": dict(a.progress.tool_counts),
        "budget_level": a.progress.level,
        "exhausted_limit": exhausted,
        "compacted_results": len(a.conv.compacted),
        "turns": [
            {
                "content": (t["content"] or "")[:2000],
                "final": t["final"],
                "tool_calls": [
                    {"name": c["name"], "arguments": c["arguments"][:500], "is_error": r["is_error"]}
                    for c, r in zip(t["tool_calls"], t.get("results", []), strict=False)
                ],
            }
            for t in turns
        ],
    }

    async def stopped() -> bool:
        await ctx.emit(
            "agent.stopped",
            {
                "stop_reason": s.reason.value,
                "status": s.status.value,
                "detail": s.detail,
                "steps": result["steps"],
                "tool_calls": result["tool_calls"],
                **a.who(),
            },
        )
        return True

    if s.reason is not StopReason.CANCELLED:  # a cancelled run may not be able to commit any more
        await ctx.step(f"{a.p}stopped", stopped)
    return Outcome(output=output, result=result, status=s.status, stop_reason=s.reason, detail=s.detail)
