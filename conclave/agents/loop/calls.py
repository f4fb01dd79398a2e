"""The tool calls of a model turn: each one durable step, run at once up to ``max_parallel``.

A call that needs a person's decision (``conclave.agents.approvals``) asks the context for the recorded
one first; without it the run leaves to wait at this step boundary. Unknown tools, refused calls and a
tool's own budget running out are answered with an error result the model can read.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pydantic import ValidationError

from conclave.agents.approvals import approval_mode, decided_arguments, refused_result
from conclave.core.ledger import BudgetExhausted, limit_label
from conclave.core.steering import is_outer_scope
from conclave.core.store_steer import ApprovalRequest, approval_id
from conclave.schema import Approval, ApprovalStatus
from conclave.tools.ask_human import ASK_HUMAN
from conclave.tools.base import Tool, ToolArgumentError, ToolContext, ToolResult, execute, format_validation_error

from .options import ANSWER_TOOL, AnswerArgs
from .state import AgentState

__all__ = ["answer_result", "run_calls", "tool_step"]


async def run_calls(a: AgentState, i: int, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Turn ``i``'s calls, all at once; every sibling finishes (and commits) before an error is raised.
    A lone call (most turns) is awaited here: a task and a gathering future for it would only add
    event-loop rounds to every step."""
    if len(calls) == 1:
        return [await tool_step(a, i, 0, calls[0])]
    results = await asyncio.gather(*(tool_step(a, i, j, c) for j, c in enumerate(calls)), return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return [r for r in results if isinstance(r, dict)]


async def decision(a: AgentState, key: str, t: Tool, arguments: str) -> Approval | None:
    """The recorded decision on a call that needs a person; without one the run leaves to wait for
    it (``WaitForPeople``). None when the call needs no one, or its arguments are invalid (it fails
    validation without bothering anyone)."""
    ctx = a.ctx
    if ctx.committed(key) or approval_mode(ctx.spec.approval, t, a.groups) != "always":
        return None
    try:
        t.parse(arguments)
    except ToolArgumentError:
        return None
    aid = approval_id(ctx.run_id, key)
    got = await ctx.decision(aid)
    if got is not None:
        return got
    raw = json.loads(arguments) if arguments and arguments.strip() else {}
    raise ctx.wait_for(
        ApprovalRequest(
            id=aid,
            tool=t.name,
            step_key=key,
            arguments=raw,
            kind="question" if t.name == ASK_HUMAN else "tool",
            reserve=a.meter.tool_amounts(t.name),
            parameters=t.parameters(),
            timeout_s=ctx.spec.approval_timeout_s,
            on_timeout=ctx.spec.approval_on_timeout,
        )
    )


async def tool_step(a: AgentState, i: int, j: int, call: dict[str, Any]) -> dict[str, Any]:
    """Call ``j`` of turn ``i`` as the durable step ``turn/{i}/tool/{j}``; its recorded result."""
    ctx = a.ctx
    name, arguments = call["name"], call["arguments"]
    step_key = f"{a.p}turn/{i}"
    key = f"{a.p}turn/{i}/tool/{j}"
    t = a.tools.get(name)
    got = await decision(a, key, t, arguments) if t is not None else None
    tctx = ToolContext(
        workspace=ctx.workspace,
        run_id=ctx.run_id,
        step_key=step_key,
        call_index=j,
        settings=a.registry.settings,
    )
    if got is not None:
        arguments = decided_arguments(got, arguments)
        if got.status is ApprovalStatus.APPROVED and got.kind == "question":
            tctx.answer = got.answer or got.reason or ""

    async def body() -> dict[str, Any]:
        await ctx.emit(
            "tool.call",
            {
                "turn": i,
                "index": j,
                "id": call["id"],
                "name": name,
                "arguments": arguments[:4000],
                "idempotency_key": tctx.idempotency_key,
                **({"approval": {"id": got.id, "status": got.status.value}} if got else {}),
                **a.who(),
            },
        )
        refused = refused_result(got) if got is not None else None
        if name == ANSWER_TOOL and a.answer_tool:
            result = answer_result(arguments)
        elif t is None:
            known = ", ".join(sorted(a.tools) + ([ANSWER_TOOL] if a.answer_tool else []))
            result = ToolResult(f"error: unknown tool {name!r}; available tools: {known}", is_error=True)
        elif refused is not None:
            result = refused
        else:
            try:
                result = await execute(t, arguments, tctx, runner=lambda fn: a.meter.tool(name, fn))
            except BudgetExhausted as e:
                if not e.limit.startswith("tool:") or is_outer_scope(e.scope):
                    raise
                result = ToolResult(
                    f"error: no budget left for this call ({limit_label(e.limit)} is used up); "
                    f"use other tools or give your answer",
                    is_error=True,
                    data={"error": "budget"},
                )
        await ctx.emit(
            "tool.result",
            {
                "turn": i,
                "index": j,
                "id": call["id"],
                "name": name,
                "is_error": result.is_error,
                "content": result.content[:4000],
                "data": result.data or {},
                **a.who(),
            },
        )
        return {
            "id": call["id"],
            "name": name,
            "content": result.content,
            "is_error": result.is_error,
            "data": result.data or {},
        }

    async with a.sem:
        value: dict[str, Any] = await ctx.step(key, body)
        return value


def answer_result(arguments: str) -> ToolResult:
    """The ``final_answer`` call's result: the answer recorded, or what is wrong with its arguments."""
    try:
        args = AnswerArgs.model_validate_json(arguments or "{}")
    except ValidationError as e:
        return ToolResult(format_validation_error(e, ANSWER_TOOL), is_error=True, data={"error": "arguments"})
    return ToolResult("answer recorded", data={"answer": args.answer})
