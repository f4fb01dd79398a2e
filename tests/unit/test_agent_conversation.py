"""The agent's conversation, kept incrementally, is the one its recorded steps describe, and its prompt
bound is the one the Meter would compute from the request."""

from __future__ import annotations

from typing import Any

import pytest

from conclave.agents.loop.conversation import Conversation
from conclave.agents.loop.options import AgentOptions, AgentSetup, answer_def, tool_definition
from conclave.agents.meter import Meter, prompt_upper_bound
from conclave.budgets.pricing import Pricing
from conclave.cluster.engines.sim import SimEngine
from conclave.cluster.router import LocalRouter
from conclave.core.ledger import RunLedger
from conclave.core.memory import InMemoryRunStore
from conclave.core.pending import LedgerOp
from conclave.schema.chat import ChatMessage, FunctionCall, ToolCall
from conclave.tools.fs import ReadTool, WriteTool


class _Sink:
    async def ledger_op(self, op: LedgerOp) -> None:
        raise AssertionError("the conversation makes no calls")


def _meter() -> Meter:
    router = LocalRouter({"m": SimEngine({"mode": "echo"}, name="m")})
    return Meter(ledger=RunLedger(InMemoryRunStore(), "r"), pricing=Pricing(), router=router, sink=_Sink())


def _reference(conv: Conversation, budget_text: str | None, final: bool) -> list[dict[str, Any]]:
    """The conversation as the recorded values describe it, built from nothing: system, task, then per
    turn the assistant message and one tool message per result (a compacted result by its pointer),
    then the tail (budget block, the final-answer request, the reminder)."""
    setup = conv.setup
    msgs = [ChatMessage(role="system", content=conv.system())]
    task = setup.task
    msgs += (
        [ChatMessage(role="user", content=task)]
        if isinstance(task, str)
        else [ChatMessage(role=m.role, content=m.content) for m in task]
    )
    for turn in conv.turns:
        calls = [
            ToolCall(id=c["id"], function=FunctionCall(name=c["name"], arguments=c["arguments"]))
            for c in turn["tool_calls"]
        ]
        msgs.append(ChatMessage(role="assistant", content=turn["content"], tool_calls=calls or None))
        for r in turn.get("results", []):
            content = conv.compacted.get(r["id"], r["content"])
            msgs.append(ChatMessage(role="tool", tool_call_id=r["id"], name=r["name"], content=content))
    tail = [t for t in (budget_text,) if t]
    if final:
        tail.append("Do not call any tool now. Reply with your best final answer to the task, as plain text.")
    if setup.reminder:
        tail.append(setup.reminder.replace("{turn}", str(len(conv.turns))))
    if tail:
        msgs.append(ChatMessage(role="user", content="\n".join(tail)))
    return [m.model_dump() for m in msgs]


def _turn(i: int, *calls: tuple[str, str]) -> dict[str, Any]:
    return {
        "content": f"thinking {i} é",
        "tool_calls": [{"id": f"c{i}-{j}", "name": n, "arguments": a} for j, (n, a) in enumerate(calls)],
        "finish_reason": "tool_calls",
        "final": False,
    }


@pytest.mark.parametrize("tool_choice", ["auto", "required"])
async def test_the_conversation_kept_incrementally_is_the_one_its_steps_describe(tool_choice: str) -> None:
    opts = AgentOptions(tool_choice=tool_choice, min_tool_turns=2)  # type: ignore[arg-type]
    setup = AgentSetup(task="do it", meter=_meter(), user_system="be brief", reminder="turn {turn}: stay on task")
    conv = Conversation(setup, opts, [tool_definition(ReadTool()), tool_definition(WriteTool())], "m")

    def check() -> None:
        for budget_text in (None, "<budget>calls 3 of 10</budget>"):
            for final in (False, True):
                msgs = conv.messages(budget_text, final=final)
                assert [m.model_dump() for m in msgs] == _reference(conv, budget_text, final)
                request = conv.request(msgs, final=final)
                assert request == conv._validated_request(msgs, final=final)
                assert request.model_fields_set == conv._validated_request(msgs, final=final).model_fields_set
                assert conv.prompt_bound(budget_text, final) == prompt_upper_bound(request)

    check()
    for i in range(4):
        turn = _turn(i, ("read", '{"path": "a.md"}'), ("write", '{"path": "b.md", "content": "ü"}'))
        conv.add_turn(turn)
        check()
        results = [
            {"id": c["id"], "name": c["name"], "content": f"result {i}/{c['id']} " + "x" * 300, "is_error": False}
            for c in turn["tool_calls"]
        ]
        conv.add_results(turn, results)
        check()
    pointers = {"c0-0": "moved to logs/a.md", "c1-1": "moved to logs/b.md"}
    expected = conv.prompt_bound(pointers=pointers)
    conv.compact(pointers)
    assert conv.prompt_bound() == expected
    check()
    assert conv.tool_defs()[-1] == answer_def() if tool_choice == "required" else answer_def() not in conv.tool_defs()


async def test_a_task_given_as_messages_starts_the_conversation() -> None:
    from conclave.schema import ChatMessageIn

    task = [ChatMessageIn(role="user", content="first"), ChatMessageIn(role="assistant", content="ok")]
    conv = Conversation(AgentSetup(task=task, meter=_meter()), AgentOptions(), [], "m")
    assert [m.content for m in conv.messages()][1:] == ["first", "ok"]
    assert conv.prompt_bound() == prompt_upper_bound(conv.request(conv.messages(), final=False))


def test_tool_definitions_are_built_once_per_process() -> None:
    assert tool_definition(ReadTool()) is tool_definition(ReadTool())
    assert tool_definition(ReadTool()) == ReadTool().definition()
