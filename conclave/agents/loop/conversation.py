"""The conversation an agent's model sees, built from the recorded step values alone.

Every model turn's recorded value (its text, its tool calls, the results they got) and the compaction
steps' pointers are all it takes: a resumed run that replays its steps sees the same conversation as
the run that made them, byte for byte.
"""

from __future__ import annotations

from typing import Any

from conclave.agents.meter import PER_REQUEST, message_bound, tools_bound
from conclave.schema.chat import ChatMessage, ChatRequest, FunctionCall, ToolCall, ToolDef

from .options import ANSWER_TOOL, DEFAULT_SYSTEM, AgentOptions, AgentSetup, answer_def

__all__ = ["Conversation"]


class Conversation:
    """The recorded turns (with their ``results``), the compacted results, and the requests they make.

    Kept incrementally: each turn appends its assistant message and its tool messages once
    (``add_turn``, ``add_results``) and a compaction replaces the messages it moved (``compact``), so a
    turn costs what it adds, not the whole history again. The prompt's byte bound (what the Meter
    reserves, ``conclave.agents.meter.prompt_upper_bound``) is kept the same way. The messages are a
    function of the recorded step values only: a replay that adds the same turns, results and
    compactions in the same order holds the same conversation.
    """

    def __init__(self, setup: AgentSetup, opts: AgentOptions, defs: list[ToolDef], model: str) -> None:
        self.setup = setup
        self.opts = opts
        self.defs = defs
        self.model = model
        self.answer_tool = opts.tool_choice == "required"
        self.turns: list[dict[str, Any]] = []  # recorded model turns (+ "results")
        self.compacted: dict[str, str] = {}  # tool_call_id -> pointer text
        self._msgs: list[ChatMessage] = []
        self._bound = 0  # sum of message_bound over _msgs
        self._tool_at: dict[str, list[int]] = {}  # tool_call_id -> indexes of its tool messages in _msgs
        self._defs_bound = tools_bound(defs)
        self._answer_bound = tools_bound([answer_def()])
        self._templates: dict[tuple[bool, bool], ChatRequest] = {}
        task = setup.task
        self._append(ChatMessage(role="system", content=self.system()))
        if isinstance(task, str):
            self._append(ChatMessage(role="user", content=task))
        else:
            for m in task:
                self._append(ChatMessage(role=m.role, content=m.content))

    def _append(self, m: ChatMessage) -> None:
        self._msgs.append(m)
        self._bound += message_bound(m)

    def system(self) -> str:
        text = self.setup.system or DEFAULT_SYSTEM
        if self.answer_tool:
            text += f"When the task is done, call {ANSWER_TOOL} with your answer."
        else:
            text += "When the task is done, reply with your final answer as plain text, without a tool call."
        if self.setup.user_system:
            text += "\n\n" + self.setup.user_system
        return text

    # -- what a turn adds -----------------------------------------------------------------------
    def add_turn(self, turn: dict[str, Any]) -> None:
        """A model turn's recorded value: its text and tool calls become the assistant message."""
        self.turns.append(turn)
        # model_construct: these values are ours, recorded from a response that was validated when the
        # engine built it (an assistant message with these fields passes every validator).
        calls = [
            ToolCall.model_construct(
                id=c["id"], function=FunctionCall.model_construct(name=c["name"], arguments=c["arguments"])
            )
            for c in turn["tool_calls"]
        ]
        self._append(ChatMessage.model_construct(role="assistant", content=turn["content"], tool_calls=calls or None))

    def add_results(self, turn: dict[str, Any], results: list[dict[str, Any]]) -> None:
        """The recorded results of ``turn``'s calls (the latest turn), one tool message each."""
        turn["results"] = results
        for r in results:
            self._tool_at.setdefault(r["id"], []).append(len(self._msgs))
            content = self.compacted.get(r["id"], r["content"])
            self._append(
                ChatMessage.model_construct(role="tool", tool_call_id=r["id"], name=r["name"], content=content)
            )

    def compact(self, pointers: dict[str, str]) -> None:
        """Results moved to the workspace: each one's messages now show its pointer."""
        self.compacted.update(pointers)
        for rid, text in pointers.items():
            for k in self._tool_at.get(rid, []):
                old = self._msgs[k]
                self._bound -= message_bound(old)
                self._msgs[k] = ChatMessage(role="tool", tool_call_id=rid, name=old.name, content=text)
                self._bound += message_bound(self._msgs[k])

    # -- the request -----------------------------------------------------------------------------
    def _tail(self, budget_text: str | None, final: bool) -> ChatMessage | None:
        tail = []
        if budget_text:
            tail.append(budget_text)
        if final:
            tail.append("Do not call any tool now. Reply with your best final answer to the task, as plain text.")
        if self.setup.reminder:
            tail.append(self.setup.reminder.replace("{turn}", str(len(self.turns))))
        return ChatMessage(role="user", content="\n".join(tail)) if tail else None

    def messages(self, budget_text: str | None = None, final: bool = False) -> list[ChatMessage]:
        msgs = list(self._msgs)
        tail = self._tail(budget_text, final)
        if tail is not None:
            msgs.append(tail)
        return msgs

    def _offers_answer(self) -> bool:
        return self.answer_tool and len(self.turns) >= self.opts.min_tool_turns

    def tool_defs(self) -> list[ToolDef]:
        if self._offers_answer():
            return [*self.defs, answer_def()]
        return list(self.defs)

    def request(self, messages: list[ChatMessage], *, final: bool) -> ChatRequest:
        """The request for ``messages``: a copy of a validated template (one per kind of turn) with the
        messages put in, so no turn re-validates the whole history (pydantic re-runs every message's
        validator when a request is built from them)."""
        key = (final, self._offers_answer())
        template = self._templates.get(key)
        if template is None:
            template = self._templates[key] = self._validated_request(messages[:1], final=final)
        return template.model_copy(update={"messages": messages})

    def _validated_request(self, messages: list[ChatMessage], *, final: bool) -> ChatRequest:
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

    def prompt_bound(
        self, budget_text: str | None = None, final: bool = False, *, pointers: dict[str, str] | None = None
    ) -> int:
        """``prompt_upper_bound`` of ``request(messages(budget_text, final), final=final)`` without
        building it, and as it would be with ``pointers`` (more compacted results) applied."""
        n = PER_REQUEST + self._bound
        tail = self._tail(budget_text, final)
        if tail is not None:
            n += message_bound(tail)
        if not final:
            n += self._defs_bound + (self._answer_bound if self._offers_answer() else 0)
        for rid, text in (pointers or {}).items():
            for k in self._tool_at.get(rid, []):
                n += len(text.encode()) - len(self._msgs[k].text().encode())
        return n

    def partial(self) -> str | None:
        """The latest turn's text that says something: the best partial answer so far."""
        for turn in reversed(self.turns):
            if turn["content"] and turn["content"].strip():
                return str(turn["content"])
        return None
