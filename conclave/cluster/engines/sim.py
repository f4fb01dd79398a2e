"""``sim``: a deterministic simulated engine for tests, benchmarks and capacity planning.

It is a test double and says so: it never runs by default, and it produces text by rule, not by
understanding. What it does model faithfully is what orchestration depends on: latency, token rate,
failures, token counts, ``n`` samples, tool calls, and cancellation.

Token counts follow one documented rule (whitespace-separated words; each message adds 4 tokens of
framing), so tests can predict usage exactly.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from conclave.cluster.engine import Engine
from conclave.cluster.engines.options import EngineOptions
from conclave.schema.chat import (
    AssistantMessage,
    ChatChoice,
    ChatChunk,
    ChatChunkChoice,
    ChatDelta,
    ChatRequest,
    ChatResponse,
    CompletionUsage,
    EngineError,
    FunctionCall,
    ToolCall,
    new_completion_id,
)

__all__ = ["SimEngine", "SimOptions", "SimReply", "SimToolCall", "count_tokens", "prompt_tokens"]


class _Opts(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SimToolCall(_Opts):
    name: str
    arguments: dict[str, Any] | str = Field(default_factory=dict)


class SimReply(_Opts):
    """One scripted reply. ``when`` (a regex) selects it by the last message's text in ``rules``
    mode; ``weight`` is its probability in ``sample`` mode."""

    content: str | None = None
    tool_calls: list[SimToolCall] | None = None
    when: str | None = None
    weight: float = Field(default=1.0, ge=0)
    finish_reason: Literal["stop", "length", "tool_calls"] | None = None


class SimOptions(EngineOptions):
    """How the simulated model behaves.

    Modes: ``echo`` answers with the last message; ``script`` plays ``replies`` in order, one per
    assistant turn already in the conversation (the last reply repeats), so a resumed run sees the
    same script; ``rules`` answers with the first reply whose ``when`` matches the last message;
    ``sample`` draws a reply by weight (seeded by the request's ``seed`` and the sample index);
    ``tool_loop`` calls ``tool_name`` until ``steps - 1`` tool results are in the conversation, then
    answers ``final``.
    """

    mode: Literal["echo", "script", "rules", "sample", "tool_loop"] = "echo"
    latency_s: float = Field(default=0.0, ge=0, description="Delay before the first token.")
    tokens_per_s: float | None = Field(default=None, gt=0, description="Generation rate; None = instant.")
    failure_rate: float = Field(default=0.0, ge=0, le=1, description="Probability a call raises.")
    seed: int = 0
    replies: list[SimReply] = Field(default_factory=list)
    steps: int = Field(default=10, ge=1)
    tool_name: str = "lookup"
    tool_arguments: dict[str, Any] = Field(default_factory=lambda: {"q": "q{i}"})
    final: str = "final answer"
    context_window: int = Field(default=32768, ge=16)

    @model_validator(mode="after")
    def _replies_for_mode(self) -> SimOptions:
        if self.mode in ("script", "rules", "sample") and not self.replies:
            raise ValueError(f"sim mode {self.mode!r} needs at least one entry in replies")
        if self.mode == "rules":
            for i, r in enumerate(self.replies):
                if r.when is not None:
                    try:
                        re.compile(r.when)
                    except re.error as e:
                        raise ValueError(f"replies[{i}].when is not a valid regex: {e}") from e
        return self


def count_tokens(text: str) -> int:
    return len(text.split())


def prompt_tokens(request: ChatRequest) -> int:
    total = 0
    for m in request.messages:
        total += 4 + count_tokens(m.text())
        for tc in m.tool_calls or []:
            total += count_tokens(tc.function.name) + count_tokens(tc.function.arguments)
    return total


class SimEngine(Engine):
    provider = "sim"

    def __init__(self, options: SimOptions | dict[str, Any] | None = None, *, name: str = "sim") -> None:
        self.options = SimOptions.of(options)
        self.name = name
        self._rng = random.Random(self.options.seed)
        self.calls = 0

    # -- choosing what to say ------------------------------------------------------------------
    def _reply(self, request: ChatRequest, index: int) -> SimReply:
        o = self.options
        msgs = request.messages
        if o.mode == "echo":
            return SimReply(content=msgs[-1].text() or "ok")
        if o.mode == "script":
            turn = sum(1 for m in msgs if m.role == "assistant")
            return o.replies[min(turn, len(o.replies) - 1)]
        if o.mode == "rules":
            last = msgs[-1].text()
            for r in o.replies:
                if r.when is None or re.search(r.when, last):
                    return r
            return SimReply(content="no rule matched")
        if o.mode == "sample":
            key = f"{o.seed}:{request.seed}:{index}:{self._prompt_digest(request)}"
            rng = random.Random(int(hashlib.sha256(key.encode()).hexdigest()[:16], 16))
            return rng.choices(o.replies, weights=[r.weight for r in o.replies])[0]
        # tool_loop
        done = sum(1 for m in msgs if m.role == "tool")
        if done < o.steps - 1 and request.tools and request.tool_choice != "none":
            args = {k: (v.format(i=done) if isinstance(v, str) else v) for k, v in o.tool_arguments.items()}
            return SimReply(tool_calls=[SimToolCall(name=o.tool_name, arguments=args)])
        return SimReply(content=o.final)

    @staticmethod
    def _prompt_digest(request: ChatRequest) -> str:
        return hashlib.sha256("\x00".join(m.text() for m in request.messages).encode()).hexdigest()[:16]

    def _choice(self, request: ChatRequest, index: int) -> tuple[ChatChoice, int]:
        reply = self._reply(request, index)
        limit = request.token_limit
        content = reply.content
        finish = reply.finish_reason
        calls: list[ToolCall] | None = None
        if reply.tool_calls:
            calls = [
                ToolCall(
                    id=f"call_{uuid.uuid4().hex[:12]}",
                    function=FunctionCall(
                        name=tc.name,
                        arguments=tc.arguments if isinstance(tc.arguments, str) else json.dumps(tc.arguments),
                    ),
                )
                for tc in reply.tool_calls
            ]
            finish = finish or "tool_calls"
            n_out = sum(count_tokens(c.function.name) + count_tokens(c.function.arguments) for c in calls)
        else:
            words = (content or "").split()
            if limit is not None and len(words) > limit:
                content, finish = " ".join(words[:limit]), "length"
            n_out = count_tokens(content or "")
        choice = ChatChoice(
            index=index, message=AssistantMessage(content=content, tool_calls=calls), finish_reason=finish or "stop"
        )
        return choice, n_out

    # -- the Engine contract ---------------------------------------------------------------------
    async def _fail_maybe(self) -> None:
        self.calls += 1
        if self.options.failure_rate and self._rng.random() < self.options.failure_rate:
            raise EngineError("simulated engine failure", retryable=True, status=503)

    async def chat(self, request: ChatRequest) -> ChatResponse:
        await self._fail_maybe()
        n_in = prompt_tokens(request)
        if n_in > self.options.context_window:
            raise EngineError(
                f"prompt of {n_in} tokens exceeds the context window of {self.options.context_window}",
                status=400,
            )
        choices, n_out = [], 0
        for i in range(request.n):
            choice, k = self._choice(request, i)
            choices.append(choice)
            n_out += k
        delay = self.options.latency_s
        if self.options.tokens_per_s:
            delay += (n_out / request.n) / self.options.tokens_per_s
        if delay:
            await asyncio.sleep(delay)
        return ChatResponse(
            model=request.model or self.name,
            choices=choices,
            usage=CompletionUsage.of(n_in, n_out),
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Streams word by word at ``tokens_per_s``; closing the stream stops the generation."""
        await self._fail_maybe()
        cid, model = new_completion_id(), request.model or self.name
        n_in, n_out = prompt_tokens(request), 0
        if self.options.latency_s:
            await asyncio.sleep(self.options.latency_s)
        for i in range(request.n):
            choice, k = self._choice(request, i)
            yield ChatChunk(id=cid, model=model, choices=[ChatChunkChoice(index=i, delta=ChatDelta(role="assistant"))])
            if choice.message.tool_calls:
                calls = [
                    {"index": j, "id": tc.id, "type": "function", "function": tc.function.model_dump()}
                    for j, tc in enumerate(choice.message.tool_calls)
                ]
                n_out += k
                yield ChatChunk(
                    id=cid, model=model, choices=[ChatChunkChoice(index=i, delta=ChatDelta(tool_calls=calls))]
                )
            else:
                for j, word in enumerate((choice.message.content or "").split(" ")):
                    if self.options.tokens_per_s:
                        await asyncio.sleep(1.0 / self.options.tokens_per_s)
                    n_out += count_tokens(word)
                    text = word if j == 0 else " " + word
                    yield ChatChunk(
                        id=cid, model=model, choices=[ChatChunkChoice(index=i, delta=ChatDelta(content=text))]
                    )
            yield ChatChunk(
                id=cid,
                model=model,
                choices=[ChatChunkChoice(index=i, delta=ChatDelta(), finish_reason=choice.finish_reason)],
            )
        yield ChatChunk(id=cid, model=model, choices=[], usage=CompletionUsage.of(n_in, n_out))
