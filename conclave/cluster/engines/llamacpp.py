"""``llamacpp``: a GGUF model on the CPU through llama-cpp-python — the default model.

One ``Llama`` object must never run two requests at once (the process aborts; DESIGN.md), so every
call holds an ``asyncio.Lock`` around ``asyncio.to_thread``. Scale with replicas, not threads: one
thread per replica measured fastest on these machines. ``n`` > 1 runs the samples one after another
with distinct seeds.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from conclave.cluster.engine import Engine, EngineError
from conclave.cluster.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatChunk,
    ChatChunkChoice,
    ChatDelta,
    ChatRequest,
    ChatResponse,
    CompletionUsage,
    FunctionCall,
    ToolCall,
    new_completion_id,
)

__all__ = ["LlamaCppEngine", "LlamaCppOptions"]


class LlamaCppOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_path: str = Field(description="Path of a GGUF file.")
    n_threads: int = Field(default=1, ge=1, le=256)
    n_ctx: int = Field(default=2048, ge=128)
    n_batch: int = Field(default=256, ge=8)
    chat_format: str | None = None
    default_max_tokens: int = Field(default=256, ge=1)
    seed: int = 0

    @field_validator("model_path")
    @classmethod
    def _exists(cls, v: str) -> str:
        if not Path(v).is_file():
            raise ValueError(f"no GGUF file at {v!r}")
        return v


def _messages(request: ChatRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in request.messages:
        d: dict[str, Any] = {"role": m.role, "content": m.text()}
        if m.role == "tool":
            # Small chat templates know no tool role; show the result as user-visible context.
            d = {"role": "user", "content": f"Tool result ({m.name or 'tool'}): {m.text()}"}
        elif m.tool_calls:
            calls = "; ".join(f"{c.function.name}({c.function.arguments})" for c in m.tool_calls)
            d["content"] = (d["content"] + "\n" if d["content"] else "") + f"[called {calls}]"
        out.append(d)
    return out


def _tool_args_schema(params: dict[str, Any]) -> dict[str, Any]:
    """Bound every free string so a small model cannot ramble inside one until max_tokens."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: walk(v) for k, v in node.items()}
            if node.get("type") == "string" and "enum" not in node and "maxLength" not in node:
                node["maxLength"] = 200
            return node
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    schema = walk(params)
    schema.setdefault("type", "object")
    return schema


class LlamaCppEngine(Engine):
    provider = "llama.cpp"

    def __init__(self, options: LlamaCppOptions | dict[str, Any], *, name: str = "llamacpp") -> None:
        from llama_cpp import Llama

        self.options = options if isinstance(options, LlamaCppOptions) else LlamaCppOptions.model_validate(options)
        self.name = name
        o = self.options
        self.llm = Llama(
            model_path=o.model_path,
            n_threads=o.n_threads,
            n_threads_batch=o.n_threads,
            n_ctx=o.n_ctx,
            n_batch=o.n_batch,
            chat_format=o.chat_format,
            seed=o.seed,
            verbose=False,
        )
        self._lock = asyncio.Lock()

    # -- helpers ------------------------------------------------------------------------------------
    def _count(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode(), add_bos=False, special=True)) if text else 0

    def _kwargs(self, request: ChatRequest, seed: int | None) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "messages": _messages(request),
            "max_tokens": request.token_limit or self.options.default_max_tokens,
            "stop": request.stop_list() or None,
            "seed": seed,
        }
        if request.temperature is not None:
            kw["temperature"] = request.temperature
        if request.top_p is not None:
            kw["top_p"] = request.top_p
        if request.presence_penalty is not None:
            kw["presence_penalty"] = request.presence_penalty
        if request.frequency_penalty is not None:
            kw["frequency_penalty"] = request.frequency_penalty
        rf = request.response_format
        if rf is not None and rf.type == "json_object":
            kw["response_format"] = {"type": "json_object"}
        elif rf is not None and rf.type == "json_schema" and rf.json_schema is not None:
            kw["response_format"] = {"type": "json_object", "schema": rf.json_schema.schema_}
        return kw

    def _tool_target(self, request: ChatRequest) -> str | None:
        """Which tool the model must call, if the request forces one. For ``required`` (or ``auto``
        with tools) the model first picks a name from a constrained enum."""
        if not request.tools or request.tool_choice == "none":
            return None
        named = request.chosen_tool()
        if named:
            return named
        if request.tool_choice == "required":
            return "?"
        return None

    def _run_one(
        self, request: ChatRequest, seed: int | None, cancel: threading.Event
    ) -> tuple[AssistantMessage, str, int, int]:
        """One sample, blocking. Returns (message, finish_reason, prompt tokens, completion tokens)."""
        target = self._tool_target(request)
        kw = self._kwargs(request, seed)
        prompt_tok = 0
        completion_tok = 0
        if target is not None:
            assert request.tools is not None
            tools = {t.function.name: t.function for t in request.tools}
            if target == "?":
                names = list(tools)
                pick = self.llm.create_chat_completion(
                    **{
                        **kw,
                        "max_tokens": 32,
                        "response_format": {
                            "type": "json_object",
                            "schema": {
                                "type": "object",
                                "properties": {"tool": {"type": "string", "enum": names}},
                                "required": ["tool"],
                            },
                        },
                    },
                )
                prompt_tok += pick["usage"]["prompt_tokens"]
                completion_tok += pick["usage"]["completion_tokens"]
                try:
                    target = json.loads(pick["choices"][0]["message"]["content"] or "{}")["tool"]
                except (ValueError, KeyError, TypeError):
                    target = names[0]
                if target not in tools:
                    target = names[0]
            fn = tools[target]
            hint = {"role": "system", "content": f"Call the function {fn.name}: {fn.description or ''}".strip()}
            kw["messages"] = [*kw["messages"], hint]
            kw["response_format"] = {"type": "json_object", "schema": _tool_args_schema(fn.parameters)}
            kw["max_tokens"] = max(kw["max_tokens"] or 0, 128)
            out = self.llm.create_chat_completion(**kw)
            prompt_tok += out["usage"]["prompt_tokens"]
            completion_tok += out["usage"]["completion_tokens"]
            args = out["choices"][0]["message"]["content"] or "{}"
            call = ToolCall(id=f"call_{uuid.uuid4().hex[:16]}", function=FunctionCall(name=fn.name, arguments=args))
            return AssistantMessage(content=None, tool_calls=[call]), "tool_calls", prompt_tok, completion_tok
        out = self.llm.create_chat_completion(**kw)
        choice = out["choices"][0]
        msg = AssistantMessage(content=choice["message"].get("content") or "")
        return (
            msg,
            choice.get("finish_reason") or "stop",
            out["usage"]["prompt_tokens"],
            out["usage"]["completion_tokens"],
        )

    # -- Engine -------------------------------------------------------------------------------------
    async def chat(self, request: ChatRequest) -> ChatResponse:
        choices: list[ChatChoice] = []
        usage = CompletionUsage()
        base = request.seed if request.seed is not None else self.options.seed
        cancel = threading.Event()
        for i in range(request.n):
            async with self._lock:
                try:
                    msg, finish, p, c = await asyncio.to_thread(self._run_one, request, base + i, cancel)
                except ValueError as e:  # e.g. the prompt exceeds n_ctx
                    raise EngineError(f"{self.name}: {e}", status=400) from e
            choices.append(ChatChoice(index=i, message=msg, finish_reason=finish))  # type: ignore[arg-type]
            usage = usage + CompletionUsage.of(p, c) if i else CompletionUsage.of(p, c)
        return ChatResponse(model=self.name, choices=choices, usage=usage)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        if request.n > 1 or self._tool_target(request) is not None:
            async for chunk in super().stream(request):
                yield chunk
            return
        cid = new_completion_id()
        kw = self._kwargs(request, request.seed if request.seed is not None else self.options.seed)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict[str, Any] | BaseException | None] = asyncio.Queue()
        stop = threading.Event()

        def produce() -> None:
            try:
                for part in self.llm.create_chat_completion(**kw, stream=True):
                    if stop.is_set():
                        break
                    loop.call_soon_threadsafe(queue.put_nowait, part)
            except BaseException as e:  # noqa: BLE001 - handed to the consumer
                loop.call_soon_threadsafe(queue.put_nowait, e)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        async with self._lock:
            task = asyncio.ensure_future(asyncio.to_thread(produce))
            text: list[str] = []
            finish = "stop"
            try:
                yield ChatChunk(
                    id=cid,
                    model=self.name,
                    choices=[ChatChunkChoice(index=0, delta=ChatDelta(role="assistant", content=""))],
                )
                while (item := await queue.get()) is not None:
                    if isinstance(item, BaseException):
                        raise EngineError(f"{self.name}: {item}", status=500) from item
                    ch = item["choices"][0]
                    piece = ch["delta"].get("content")
                    if ch.get("finish_reason"):
                        finish = ch["finish_reason"]
                    if piece:
                        text.append(piece)
                        yield ChatChunk(
                            id=cid, model=self.name, choices=[ChatChunkChoice(index=0, delta=ChatDelta(content=piece))]
                        )
                prompt = sum(self._count(m["content"] or "") + 4 for m in kw["messages"])
                usage = CompletionUsage.of(prompt, self._count("".join(text)))
                yield ChatChunk(
                    id=cid,
                    model=self.name,
                    choices=[ChatChunkChoice(index=0, delta=ChatDelta(), finish_reason=finish)],  # type: ignore[arg-type]
                    usage=usage if request.stream_options and request.stream_options.include_usage else None,
                )
            finally:
                stop.set()
                await task

    async def health(self) -> None:
        if self.llm is None:
            raise EngineError(f"{self.name}: model not loaded", retryable=True, status=503)

    async def close(self) -> None:
        async with self._lock:
            self.llm.close()
