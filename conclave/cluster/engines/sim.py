"""``sim``: a deterministic simulated engine for tests, benchmarks and capacity planning.

It is a test double and says so: it never runs by default, and it produces text by rule, not by
understanding. What it does model faithfully is what orchestration depends on: latency, token rate,
failures, token counts, ``n`` samples, tool calls, and cancellation.

Token counts follow one documented rule (whitespace-separated words; each message adds 4 tokens of
framing), so tests can predict usage exactly.

Cost model. Without ``batching`` a request costs ``latency_s`` (+ its mean sample's tokens at
``tokens_per_s``) whatever its ``n``, and any number of requests run at once: a model with unlimited
capacity, which is what an orchestration benchmark with a fixed model latency wants. With
``batching`` the engine charges per generated sample, batched the way a vLLM replica batches, in
a simplified (static-batch) form:

* every sample of every request joins one queue; an idle engine waits ``window_s`` after the first
  arrival for company (or until ``max_batch`` samples wait), then runs them as one batch;
* a batch takes ``latency_s + per_token_s x max(output tokens of its samples)`` (prefill and
  scheduling, then one decode step per token of the longest sample: continuous batching
  generates every sequence of the batch in the same steps);
* batches run one after another (one replica is one accelerator); samples that arrive while a
  batch runs form the next batch, which starts as soon as the running one ends;
* a batch holds at most ``max_batch`` samples (vLLM's ``max_num_seqs``); the rest wait their turn.

The simplification: vLLM admits a newcomer at the next decode step of a running batch; here it
waits for the batch to end, so a stream of late arrivals costs somewhat more than on vLLM.

It works on samples, not requests, so one request with ``n = 8`` and eight concurrent requests with
``n = 1`` that arrive within the window cost exactly the same; a request finishes when its last
sample does. Every batch is recorded (``SimEngine.batches``) with what it was charged, so tests and
benchmarks can check the schedule without reading a clock.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import re
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
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
    ChatMessage,
    ChatRequest,
    ChatResponse,
    CompletionUsage,
    EngineError,
    FunctionCall,
    ToolCall,
    new_completion_id,
)

__all__ = [
    "SimBatch",
    "SimBatching",
    "SimEngine",
    "SimOptions",
    "SimReply",
    "SimToolCall",
    "count_tokens",
    "message_tokens",
    "prompt_tokens",
]


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


class SimBatching(_Opts):
    """The batching cost model of a vLLM replica (see the module docstring)."""

    window_s: float = Field(
        default=0.002, ge=0, le=10, description="How long an idle engine waits for more samples before a batch."
    )
    max_batch: int = Field(default=256, ge=1, le=100_000, description="Samples per batch at most (max_num_seqs).")
    per_token_s: float = Field(
        default=0.0, ge=0, le=10, description="Seconds per output token of the batch's longest sample (decode step)."
    )


@dataclass(frozen=True)
class SimBatch:
    """One batch the engine ran: how many samples of how many requests, and what it charged.
    ``started`` (the event loop's clock when it began) lets a benchmark find when any engine was
    busy; it takes no part in comparisons."""

    samples: int
    requests: int
    max_tokens: int
    seconds: float
    started: float = field(default=0.0, compare=False)


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
    batching: SimBatching | None = Field(
        default=None, description="Charge latency per sample in vLLM-style batches; None = unlimited capacity."
    )

    @model_validator(mode="after")
    def _replies_for_mode(self) -> SimOptions:
        if self.batching is not None and self.tokens_per_s is not None:
            raise ValueError(
                "tokens_per_s and batching are two cost models: with batching, set batching.per_token_s instead"
            )
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


def message_tokens(m: ChatMessage) -> int:
    """One message's tokens under the rule: 4 of framing, its words, its tool calls' words."""
    total = 4 + count_tokens(m.text())
    for tc in m.tool_calls or []:
        total += count_tokens(tc.function.name) + count_tokens(tc.function.arguments)
    return total


def prompt_tokens(request: ChatRequest) -> int:
    return sum(message_tokens(m) for m in request.messages)


class _TokenMemo:
    """Token counts of messages this engine has already counted. An agent sends its whole
    conversation every turn, the same message objects each time, so counting them afresh made a
    simulated call O(conversation) (2.7% of a benchmark worker's CPU at 20 steps); the memo keeps
    each counted message alive next to its count, so an ``id`` is never reused while it is here."""

    SIZE = 8192

    def __init__(self) -> None:
        self._counts: dict[int, tuple[ChatMessage, int]] = {}

    def prompt_tokens(self, request: ChatRequest) -> int:
        counts = self._counts
        total = 0
        for m in request.messages:
            hit = counts.get(id(m))
            if hit is not None and hit[0] is m:
                total += hit[1]
                continue
            n = message_tokens(m)
            if len(counts) >= self.SIZE:
                counts.clear()
            counts[id(m)] = (m, n)
            total += n
        return total


@dataclass
class _Sample:
    tokens: int
    done: asyncio.Future[None]
    request: int


class _Batcher:
    """The queue and the one-batch-at-a-time schedule of the batching cost model."""

    def __init__(
        self, cfg: SimBatching, base_s: float, record: deque[SimBatch], sleep: Callable[[float], Awaitable[None]]
    ) -> None:
        self.cfg = cfg
        self.base_s = base_s
        self.record = record
        self.sleep = sleep
        self.total_samples = 0
        self.total_batches = 0
        self._waiting: list[_Sample] = []
        self._running: list[_Sample] = []
        self._driver: asyncio.Task[None] | None = None
        self._full: asyncio.Event | None = None
        self._requests = 0

    def cost(self, tokens: Sequence[int]) -> float:
        """What one batch of samples with these output token counts takes."""
        return self.base_s + self.cfg.per_token_s * max(tokens, default=0)

    async def generate(self, tokens: Sequence[int]) -> None:
        """Wait until every sample of one request (its output token counts) has been generated."""
        if not tokens:
            return
        loop = asyncio.get_running_loop()
        if self._driver is not None and self._driver.get_loop() is not loop:
            self._driver, self._waiting = None, []  # an engine reused on a new event loop
        self._requests += 1
        futs: list[asyncio.Future[None]] = [loop.create_future() for _ in tokens]
        self._waiting += [_Sample(t, f, self._requests) for t, f in zip(tokens, futs, strict=True)]
        if self._driver is None or self._driver.done():
            self._full = asyncio.Event()
            self._driver = loop.create_task(self._drive())
        if self._full is not None and len(self._waiting) >= self.cfg.max_batch:
            self._full.set()
        await asyncio.gather(*futs)  # cancelling the request cancels its samples; the queue drops them

    async def _drive(self) -> None:
        assert self._full is not None
        if self.cfg.window_s > 0 and not self._full.is_set():
            # The window: wait for company until it ends or a batch's worth of samples waits.
            full = asyncio.ensure_future(self._full.wait())
            window = asyncio.ensure_future(self.sleep(self.cfg.window_s))
            try:
                await asyncio.wait({full, window}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in (full, window):
                    t.cancel()
                await asyncio.gather(full, window, return_exceptions=True)
        while True:
            live = [s for s in self._waiting if not s.done.done()]
            if not live:
                self._waiting = []
                return
            batch, self._waiting = live[: self.cfg.max_batch], live[self.cfg.max_batch :]
            self._full.clear()
            tokens = [s.tokens for s in batch]
            seconds = self.cost(tokens)
            self.record.append(
                SimBatch(
                    samples=len(batch),
                    requests=len({s.request for s in batch}),
                    max_tokens=max(tokens),
                    seconds=seconds,
                    started=asyncio.get_running_loop().time(),
                )
            )
            self.total_samples += len(batch)
            self.total_batches += 1
            self._running = batch
            if seconds:
                await self.sleep(seconds)
            self._running = []
            for s in batch:
                if not s.done.done():
                    s.done.set_result(None)

    async def close(self) -> None:
        """Stop the schedule: requests waiting or being generated are cancelled."""
        for s in self._running + self._waiting:
            s.done.cancel()
        self._waiting, self._running = [], []
        if self._driver is not None and not self._driver.done():
            self._driver.cancel()
            await asyncio.gather(self._driver, return_exceptions=True)
        self._driver = None


class SimEngine(Engine):
    provider = "sim"

    #: How many of the latest batches ``batches`` keeps (the totals count every batch).
    BATCH_LOG = 10_000

    def __init__(
        self,
        options: SimOptions | dict[str, Any] | None = None,
        *,
        name: str = "sim",
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """``sleep`` is how the engine spends the time it charges; a test that wants to step the
        schedule by hand passes one it controls."""
        self.options = SimOptions.of(options)
        self.name = name
        self._sleep = sleep
        self._rng = random.Random(self.options.seed)
        self.calls = 0
        self._tokens = _TokenMemo()
        #: The batches run under the batching cost model, oldest first (the latest ``BATCH_LOG``).
        self.batches: deque[SimBatch] = deque(maxlen=self.BATCH_LOG)
        b = self.options.batching
        self._batcher = None if b is None else _Batcher(b, self.options.latency_s, self.batches, sleep)

    @property
    def batched_samples(self) -> int:
        """Samples generated under the batching cost model (0 without it)."""
        return self._batcher.total_samples if self._batcher else 0

    @property
    def batch_count(self) -> int:
        """Batches run under the batching cost model (0 without it)."""
        return self._batcher.total_batches if self._batcher else 0

    async def close(self) -> None:
        if self._batcher is not None:
            await self._batcher.close()

    def batch_cost(self, tokens: Sequence[int]) -> float:
        """Seconds one batch of samples with these output token counts is charged."""
        if self._batcher is None:
            raise ValueError("this sim engine has no batching cost model (options.batching is None)")
        return self._batcher.cost(tokens)

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
            # built from validated options: no validation to repeat on every simulated turn
            call = SimToolCall.model_construct(name=o.tool_name, arguments=args)
            return SimReply.model_construct(tool_calls=[call])
        return SimReply.model_construct(content=o.final)

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
                ToolCall.model_construct(
                    id=f"call_{os.urandom(6).hex()}",
                    function=FunctionCall.model_construct(
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
        # The engine's own values, of the declared types: constructed without re-validation, as
        # a real engine's response is built once from what the model produced.
        choice = ChatChoice.model_construct(
            index=index,
            message=AssistantMessage.model_construct(content=content, tool_calls=calls),
            finish_reason=finish or "stop",
        )
        return choice, n_out

    # -- the Engine contract ---------------------------------------------------------------------
    async def _fail_maybe(self) -> None:
        self.calls += 1
        if self.options.failure_rate and self._rng.random() < self.options.failure_rate:
            raise EngineError("simulated engine failure", retryable=True, status=503)

    async def chat(self, request: ChatRequest) -> ChatResponse:
        await self._fail_maybe()
        n_in = self._tokens.prompt_tokens(request)
        if n_in > self.options.context_window:
            raise EngineError(
                f"prompt of {n_in} tokens exceeds the context window of {self.options.context_window}",
                status=400,
            )
        choices, per_sample = [], []
        for i in range(request.n):
            choice, k = self._choice(request, i)
            choices.append(choice)
            per_sample.append(k)
        n_out = sum(per_sample)
        if self._batcher is not None:
            await self._batcher.generate(per_sample)
        else:
            delay = self.options.latency_s
            if self.options.tokens_per_s:
                delay += (n_out / request.n) / self.options.tokens_per_s
            if delay:
                await self._sleep(delay)
        return ChatResponse(
            model=request.model or self.name,
            choices=choices,
            usage=CompletionUsage.of(n_in, n_out),
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Streams word by word at ``tokens_per_s``; closing the stream stops the generation. Under
        the batching cost model the samples are generated in batches first (charged as ``chat``
        charges them), then streamed without further delay."""
        await self._fail_maybe()
        cid, model = new_completion_id(), request.model or self.name
        n_in, n_out = self._tokens.prompt_tokens(request), 0
        made = [self._choice(request, i) for i in range(request.n)]
        if self._batcher is not None:
            await self._batcher.generate([k for _, k in made])
        elif self.options.latency_s:
            await self._sleep(self.options.latency_s)
        for i, (choice, k) in enumerate(made):
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
                        await self._sleep(1.0 / self.options.tokens_per_s)
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
