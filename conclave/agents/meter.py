"""Metered calls: the only way run code reaches a model or a tool.

``Meter.chat`` reserves a model call's worst case (prompt upper bound + max_tokens, priced) in every
enclosing scope, shrinks ``max_tokens`` to what fits when the full reservation is refused, makes the
call, and hands a commit op (actual usage, release of the hold) to the run's commit sink, which
applies it atomically with the step that made the call. ``Meter.tool`` does the same for a tool.
Retries, verifiers and rankers all call through here: there is no way around the ledger.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from conclave.budgets.pricing import Pricing
from conclave.core import telemetry
from conclave.core.ledger import BudgetExhausted, RunLedger
from conclave.core.pending import LedgerOp
from conclave.core.router import ModelRouter
from conclave.schema.chat import ChatChunk, ChatMessage, ChatRequest, ChatResponse, CompletionUsage, ToolDef
from conclave.schema.money import from_pico

__all__ = ["CommitSink", "Meter", "message_bound", "prompt_estimate", "prompt_upper_bound", "tools_bound"]

T = TypeVar("T")

#: Tokens a chat template may add per message and per request (role markers, BOS, generation prompt).
PER_MESSAGE = 16
PER_REQUEST = 64


#: Bytes per token assumed when fitting a prompt into a context window. Real tokenizers average
#: ~4 bytes per token on English; 3 keeps a margin. Only the window fit uses it — the ledger
#: reserves the byte upper bound, so budgets stay safe whatever the tokenizer.
BYTES_PER_TOKEN_ESTIMATE = 3


def prompt_estimate(request: ChatRequest) -> int:
    """A realistic prompt size in tokens, for fitting ``max_tokens`` into the context window."""
    return prompt_upper_bound(request) // BYTES_PER_TOKEN_ESTIMATE


def prompt_upper_bound(request: ChatRequest) -> int:
    """An upper bound on the prompt's tokens without a tokenizer: no tokenizer makes a token of less
    than one byte, so UTF-8 bytes plus template overhead bound the count from above. It is a sum over
    the messages (``message_bound``) and the tools (``tools_bound``), so a caller that keeps a
    conversation incrementally can keep its bound the same way (``Meter.chat(prompt_bound=...)``)."""
    return PER_REQUEST + sum(message_bound(m) for m in request.messages) + tools_bound(request.tools or [])


def message_bound(m: ChatMessage) -> int:
    """One message's share of ``prompt_upper_bound``."""
    n = PER_MESSAGE + len(m.text().encode())
    for tc in m.tool_calls or []:
        n += len(tc.function.name.encode()) + len(tc.function.arguments.encode()) + PER_MESSAGE
    return n


def tools_bound(tools: Iterable[ToolDef]) -> int:
    """The tool definitions' share of ``prompt_upper_bound``: their JSON's bytes."""
    return sum(len(t.model_dump_json().encode()) for t in tools)


class CommitSink(Protocol):
    """Where ledger ops go: into the current step's commit, or straight to Redis outside a step."""

    async def ledger_op(self, op: LedgerOp) -> None: ...


@dataclass
class _ObservedSink:
    inner: CommitSink
    observer: Callable[[LedgerOp], None]

    async def ledger_op(self, op: LedgerOp) -> None:
        self.observer(op)
        await self.inner.ledger_op(op)


@dataclass
class Meter:
    """Metered access for one scope of a run (``run``, ``run/<stage>``, ``run/<stage>/<agent>``)."""

    ledger: RunLedger
    pricing: Pricing
    router: ModelRouter
    sink: CommitSink
    scope: str = "run"
    stage: str | None = None
    agent: str | None = None
    default_max_tokens: int = 1024
    min_tokens: int = 1

    def child(self, name: str, *, stage: str | None = None, agent: str | None = None) -> Meter:
        return Meter(
            ledger=self.ledger,
            pricing=self.pricing,
            router=self.router,
            sink=self.sink,
            scope=f"{self.scope}/{name}",
            stage=stage if stage is not None else self.stage,
            agent=agent if agent is not None else self.agent,
            default_max_tokens=self.default_max_tokens,
            min_tokens=self.min_tokens,
        )

    def observed(self, observer: Callable[[LedgerOp], None]) -> Meter:
        """A meter like this one (same ledger, scope, caps) whose ledger ops are also shown to ``observer``
        as they are committed; its children report too."""
        return dataclasses.replace(self, sink=_ObservedSink(self.sink, observer))

    def provider(self, model: str) -> str:
        """``gen_ai.provider.name`` for a model, if the router knows it."""
        fn = getattr(self.router, "provider", None)
        return str(fn(model)) if callable(fn) else "conclave"

    def _by(self, dim_metrics: dict[str, int], model: str | None = None, tool: str | None = None) -> dict[str, int]:
        out: dict[str, int] = {}
        dims = []
        if model:
            dims.append(f"model|{model}")
        if tool:
            dims.append(f"tool|{tool}")
        if self.stage:
            dims.append(f"stage|{self.stage}")
        if self.agent:
            dims.append(f"agent|{self.agent}")
        for d in dims:
            for metric, v in dim_metrics.items():
                out[f"{d}|{metric}"] = v
        return out

    def _max_tokens(self, model: str, request: ChatRequest, prompt_bound: int | None = None) -> int:
        """What was asked, shrunk to the room the context window leaves after the prompt. The prompt
        is estimated, not bounded: a byte bound left ~1 token for any real conversation on a 2k
        window."""
        wanted = request.token_limit or self.default_max_tokens
        window = self.router.context_window(model)
        if window is not None:
            bound = prompt_upper_bound(request) if prompt_bound is None else prompt_bound
            wanted = min(wanted, max(1, window - bound // BYTES_PER_TOKEN_ESTIMATE))
        return wanted

    async def _reserve_call(
        self, request: ChatRequest, name: str, prompt_bound: int | None = None
    ) -> tuple[str | None, ChatRequest]:
        """Hold a call's worst case, shrinking ``max_tokens`` to what fits; the request to send."""
        prompt = prompt_upper_bound(request) if prompt_bound is None else prompt_bound
        max_tokens = self._max_tokens(name, request, prompt)
        n = request.n
        res_id: str | None = None
        for _ in range(4):
            amounts = {
                "input_tokens": prompt,
                "output_tokens": max_tokens * n,
                "model_calls": 1,
                "usd": self.pricing.model_cost(name, prompt, max_tokens * n),
            }
            res_id, refusal = await self.ledger.reserve(self.scope, amounts)
            if refusal is None:
                break
            fit: int | None
            if refusal.limit == "output_tokens":
                fit = refusal.room // n
            elif refusal.limit == "usd":
                fit = self.pricing.output_tokens_for(name, refusal.room, prompt)
                fit = None if fit is None else fit // n
            else:
                fit = None
            if fit is None or fit < self.min_tokens or fit >= max_tokens:
                raise BudgetExhausted(refusal.scope, refusal.limit, refusal.room)
            max_tokens = fit
        else:  # pragma: no cover - four refusals in a row with shrinking asks
            raise BudgetExhausted(self.scope, "output_tokens", 0)
        return res_id, request.model_copy(
            update={"model": name, "max_tokens": max_tokens, "max_completion_tokens": None}
        )

    async def _commit_call(self, res_id: str | None, name: str, u: CompletionUsage, ms: int) -> int:
        """Record a finished call's usage (and release its hold) with the current step; its USD in pico."""
        usd = self.pricing.model_cost(name, u.prompt_tokens, u.completion_tokens, u.cached_tokens)
        used = {
            "input_tokens": u.prompt_tokens,
            "output_tokens": u.completion_tokens,
            "cached_tokens": u.cached_tokens,
            "model_calls": 1,
            "usd": usd,
        }
        await self.sink.ledger_op(
            RunLedger.commit_op(res_id, self.scope, used, self._by({**used, "ms": ms}, model=name))
        )
        return usd

    async def chat(
        self, request: ChatRequest, *, model: str | None = None, prompt_bound: int | None = None
    ) -> ChatResponse:
        """Make a metered model call. Raises ``BudgetExhausted`` when not even ``min_tokens`` of
        output fit, naming the limit. ``prompt_bound``, when given, must equal
        ``prompt_upper_bound(request)``: a caller that keeps it incrementally saves the O(prompt) pass."""
        name = model or request.model
        res_id, call = await self._reserve_call(request, name, prompt_bound)
        t0 = time.perf_counter()
        with telemetry.model_span(
            name,
            self.provider(name),
            max_tokens=call.max_tokens,
            messages=call.model_dump(mode="json")["messages"] if telemetry.capture_content() else None,
        ) as span:
            try:
                response = await self.router.chat(name, call)
            except BaseException as e:
                telemetry.mark_error(span, e)
                if res_id is not None:
                    await self.sink.ledger_op(RunLedger.commit_op(res_id, self.scope, {}))
                raise
            u = response.usage
            usd = await self._commit_call(res_id, name, u, int((time.perf_counter() - t0) * 1000))
            telemetry.record_usage(
                span,
                name,
                u.prompt_tokens,
                u.completion_tokens,
                [str(c.finish_reason) for c in response.choices],
                from_pico(usd),
                [c.message.model_dump(mode="json") for c in response.choices] if telemetry.capture_content() else None,
            )
        return response

    def tool_amounts(self, name: str) -> dict[str, int]:
        """What one call of tool ``name`` holds in the ledger (shown on a call waiting for approval)."""
        return {f"tool:{name}": 1, "tool:*": 1, "usd": self.pricing.tool_cost(name)}

    async def stream(self, request: ChatRequest, *, model: str | None = None) -> AsyncIterator[ChatChunk]:
        """A metered streaming call: reserved like ``chat``, committed when the stream ends with the usage
        its last chunk reports — or, when the stream stops before any usage came (the client went away, the
        engine failed mid-way), with the whole hold, so nothing generated goes uncharged."""
        name = model or request.model
        res_id, call = await self._reserve_call(request, name)
        call = call.model_copy(update={"stream": True})
        t0 = time.perf_counter()
        usage: CompletionUsage | None = None
        try:
            async for chunk in self.router.stream(name, call):
                if chunk.usage is not None:
                    usage = chunk.usage
                yield chunk
        finally:
            ms = int((time.perf_counter() - t0) * 1000)
            if usage is None:
                prompt = prompt_upper_bound(call)
                usage = CompletionUsage.of(prompt, (call.max_tokens or 0) * call.n)
            await asyncio.shield(self._commit_call(res_id, name, usage, ms))

    async def tool(self, name: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run a tool call under the ledger: one call of ``name`` and its price are held first."""
        amounts = self.tool_amounts(name)
        usd = amounts["usd"]
        res_id, refusal = await self.ledger.reserve(self.scope, amounts)
        if refusal is not None:
            raise BudgetExhausted(refusal.scope, refusal.limit, refusal.room)
        t0 = time.perf_counter()
        with telemetry.tool_span(name) as span:
            try:
                result = await fn()
            except BaseException as e:
                telemetry.mark_error(span, e)
                if res_id is not None:
                    await self.sink.ledger_op(RunLedger.commit_op(res_id, self.scope, {}))
                raise
        ms = int((time.perf_counter() - t0) * 1000)
        used = {f"tool:{name}": 1, "tool:*": 1, "usd": usd}
        by = self._by({f"tool:{name}": 1, "usd": usd, "ms": ms}, tool=name)
        await self.sink.ledger_op(RunLedger.commit_op(res_id, self.scope, used, by))
        return result
