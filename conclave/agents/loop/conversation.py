"""The conversation an agent's model sees, built from the recorded step values alone.

Every model turn's recorded value (its text, its tool calls, the results they got) and the compaction
steps' pointers are all it takes: a resumed run that replays its steps sees the same conversation as
the run that made them, byte for byte.
"""

from __future__ import annotations

from typing import Any

from conclave.schema.chat import ChatMessage, ChatRequest, FunctionCall, ToolCall, ToolDef

from .options import ANSWER_TOOL, DEFAULT_SYSTEM, AgentOptions, AgentSetup, answer_def

__all__ = ["Conversation"]


class Conversation:
    """The recorded turns (with their ``results``), the compacted results, and the requests they make."""

    def __init__(self, setup: AgentSetup, opts: AgentOptions, defs: list[ToolDef], model: str) -> None:
        self.setup = setup
        self.opts = opts
        self.defs = defs
        self.model = model
        self.answer_tool = opts.tool_choice == "required"
        self.turns: list[dict[str, Any]] = []  # recorded model turns (+ "results")
        self.compacted: dict[str, str] = {}  # tool_call_id -> pointer text

    def system(self) -> str:
        text = self.setup.system or DEFAULT_SYSTEM
        if self.answer_tool:
            text += f"When the task is done, call {ANSWER_TOOL} with your answer."
        else:
            text += "When the task is done, reply with your final answer as plain text, without a tool call."
        if self.setup.user_system:
            text += "\n\n" + self.setup.user_system
        return text

    def messages(self, budget_text: str | None = None, final: bool = False) -> list[ChatMessage]:
        task = self.setup.task
        msgs = [ChatMessage(role="system", content=self.system())]
        if isinstance(task, str):
            msgs.append(ChatMessage(role="user", content=task))
        else:
            msgs += [ChatMessage(role=m.role, content=m.content) for m in task]
        for turn in self.turns:
            calls = [
                ToolCall(id=c["id"], function=FunctionCall(name=c["name"], arguments=c["arguments"]))
                for c in turn["tool_calls"]
            ]
            msgs.append(ChatMessage(role="assistant", content=turn["content"], tool_calls=calls or None))
            for r in turn.get("results", []):
                content = self.compacted.get(r["id"], r["content"])
                msgs.append(ChatMessage(role="tool", tool_call_id=r["id"], name=r["name"], content=content))
        tail = []
        if budget_text:
            tail.append(budget_text)
        if final:
            tail.append("Do not call any tool now. Reply with your best final answer to the task, as plain text.")
        if self.setup.reminder:
            tail.append(self.setup.reminder.replace("{turn}", str(len(self.turns))))
        if tail:
            msgs.append(ChatMessage(role="user", content="\n".join(tail)))
        return msgs

    def tool_defs(self) -> list[ToolDef]:
        if self.answer_tool and len(self.turns) >= self.opts.min_tool_turns:
            return [*self.defs, answer_def()]
        return list(self.defs)

    def request(self, messages: list[ChatMessage], *, final: bool) -> ChatRequest:
        defs = self.tool_defs()
        with_tools = bool(defs) and not final
        tool_choice: Any = None
        if with_tools:
            tool_choice = "required" if self.opts.tool_choice == "required" else "auto"
        return ChatRequest(
            model=self.model,
            messages=messages,
            max_tokens=self.opts.max_tokens,
            temperature=self.opts.temperature,
            seed=self.opts.seed,
            tools=defs if with_tools else None,
            tool_choice=tool_choice,
            parallel_tool_calls=self.opts.parallel_tool_calls if with_tools else None,
        )

    def partial(self) -> str | None:
        """The latest turn's text that says something: the best partial answer so far."""
        for turn in reversed(self.turns):
            if turn["content"] and turn["content"].strip():
                return str(turn["content"])
        return None
