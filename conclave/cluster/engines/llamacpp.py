"""``llamacpp``: a GGUF model on the CPU through llama-cpp-python — the default model.

Safety. One ``Llama`` object must never run two generations at once (the process aborts; DESIGN.md).
Every generation runs in a worker thread while the engine holds an ``asyncio.Lock``, and the lock is
released only when that thread has *finished*: a cancelled caller sets a flag that a stopping
criterion checks at every token, and the engine waits for the thread to notice before letting the
next request in. Scale with replicas, not threads: one thread per replica measured fastest here.

Prompting. The prompt is rendered with the GGUF's own chat template and generated with
``create_completion``, not ``create_chat_completion``, because only the former accepts a stopping
criterion (cancellation) and lets the engine count prompt tokens exactly and see how many were
reused from the previous request's KV cache (reported as ``cached_tokens``).

Structured output, shaped for a 135M model (DESIGN.md): a tool call is made in two constrained
steps — first the function *name* under a grammar that admits only the offered names (plus
``none`` for ``tool_choice="auto"``), then the arguments under a JSON-schema grammar whose free
strings are bounded (``maxLength``) so the model cannot ramble inside one until ``max_tokens``.
Arguments that still do not parse are retried once with a larger token allowance. The constrained
steps decode greedily unless the request sets a temperature.
``response_format`` ``json_schema`` / ``json_object`` use the same grammars.

``n`` > 1 runs the samples one after another with seeds ``seed, seed+1, …``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, field_validator

from conclave.cluster.engine import Engine
from conclave.cluster.engines.constrained import ToolMenu, bound_strings, strict_json, tool_call, tool_menu
from conclave.cluster.engines.options import GenerationOptions
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
    FunctionDef,
    new_completion_id,
)

__all__ = ["LlamaCppEngine", "LlamaCppOptions"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>'"
    " + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class LlamaCppOptions(GenerationOptions):
    model_path: str = Field(description="Path of a GGUF file.")
    n_threads: int = Field(default=1, ge=1, le=256, description="One per replica measured fastest (DESIGN.md).")
    n_ctx: int = Field(default=2048, ge=128)
    n_batch: int = Field(default=256, ge=8)
    chat_template: str | None = Field(default=None, description="Jinja chat template; default: the GGUF's own.")
    temperature: float = Field(default=0.2, ge=0, le=2, description="When a request sets none.")
    top_k: int = Field(default=40, ge=0)
    min_p: float = Field(default=0.05, ge=0, le=1)
    repeat_penalty: float = Field(default=1.1, gt=0)
    tool_args_max_tokens: int = Field(default=192, ge=16, description="Least token allowance for tool arguments.")

    @field_validator("model_path")
    @classmethod
    def _exists(cls, v: str) -> str:
        if not Path(v).is_file():
            raise ValueError(f"no GGUF file at {v!r}")
        return v


def _messages(request: ChatRequest) -> list[dict[str, str]]:
    """Messages as plain role/content pairs a small chat template understands."""
    out: list[dict[str, str]] = []
    for m in request.messages:
        role = "system" if m.role == "developer" else m.role
        content = m.text()
        if m.role == "tool":
            # Small chat templates know no tool role; show the result as context from the user.
            out.append({"role": "user", "content": f"Result of {m.name or 'the tool call'}: {content}"})
            continue
        if m.tool_calls:
            calls = "; ".join(f"{c.function.name}({c.function.arguments})" for c in m.tool_calls)
            content = (content + "\n" if content else "") + f"[called {calls}]"
        out.append({"role": role, "content": content})
    return out


def _lcp(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@dataclass
class _Gen:
    """One blocking generation's result."""

    text: str
    finish: str
    prompt: int
    completion: int
    cached: int


@dataclass
class _Job:
    """One generation's inputs (prompt tokens and sampling settings)."""

    tokens: list[int]
    max_tokens: int
    stop: list[str]
    seed: int
    sampling: dict[str, Any]
    grammar: Any = None
    cancel: threading.Event = field(default_factory=threading.Event)


class LlamaCppEngine(Engine):
    provider = "llama.cpp"

    def __init__(self, options: LlamaCppOptions | dict[str, Any], *, name: str = "llamacpp") -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.options = LlamaCppOptions.of(options)
        self.name = name
        o = self.options
        self.llm: Any = Llama(
            model_path=o.model_path,
            n_threads=o.n_threads,
            n_threads_batch=o.n_threads,
            n_ctx=o.n_ctx,
            n_batch=o.n_batch,
            seed=o.seed,
            verbose=False,
        )
        eos_id, bos_id = self.llm.token_eos(), self.llm.token_bos()
        self._formatter = Jinja2ChatFormatter(
            template=o.chat_template or self.llm.metadata.get("tokenizer.chat_template") or _CHATML,
            eos_token=self.llm._model.token_get_text(eos_id) if eos_id != -1 else "",
            bos_token=self.llm._model.token_get_text(bos_id) if bos_id != -1 else "",
            stop_token_ids=[eos_id],
        )
        self._lock = asyncio.Lock()
        self._closed = False

    # -- prompt and grammar -------------------------------------------------------------------------
    def _tokens(self, messages: list[dict[str, str]]) -> tuple[list[int], list[str]]:
        result = self._formatter(messages=messages)  # type: ignore[arg-type]  # llama_cpp's TypedDicts
        tokens = self.llm.tokenize(result.prompt.encode(), add_bos=not result.added_special, special=True)
        stop = result.stop if isinstance(result.stop, list) else [result.stop] if result.stop else []
        if len(tokens) >= self.options.n_ctx:
            raise EngineError(
                f"{self.name}: the prompt has {len(tokens)} tokens; the context window is {self.options.n_ctx}",
                status=400,
            )
        return tokens, [s for s in stop if s]

    @functools.lru_cache(maxsize=64)  # noqa: B019 - one engine per replica, lives as long as it
    def _grammar(self, gbnf_or_schema: str, kind: Literal["gbnf", "schema"]) -> Any:
        from llama_cpp.llama_grammar import LlamaGrammar

        try:
            if kind == "schema":
                return LlamaGrammar.from_json_schema(gbnf_or_schema, verbose=False)
            return LlamaGrammar.from_string(gbnf_or_schema, verbose=False)
        except Exception as e:
            raise EngineError(f"{self.name}: cannot build a grammar for this JSON schema: {e}", status=400) from e

    def _json_grammar(self, schema: dict[str, Any] | None) -> Any:
        from llama_cpp.llama_grammar import JSON_GBNF

        if not schema:
            return self._grammar(JSON_GBNF, "gbnf")
        bounded = bound_strings(schema, self.options.max_string_length)
        return self._grammar(json.dumps(bounded, sort_keys=True), "schema")

    def _job(
        self,
        request: ChatRequest,
        messages: list[dict[str, str]],
        seed: int,
        *,
        grammar: Any = None,
        max_tokens: int | None = None,
    ) -> _Job:
        tokens, template_stop = self._tokens(messages)
        o = self.options
        room = o.n_ctx - len(tokens)
        limit = min(max_tokens or request.token_limit or o.default_max_tokens, room)
        sampling: dict[str, Any] = {
            "temperature": o.temperature if request.temperature is None else request.temperature,
            "top_k": o.top_k,
            "min_p": o.min_p,
            "repeat_penalty": o.repeat_penalty,
        }
        if request.top_p is not None:
            sampling["top_p"] = request.top_p
        if request.presence_penalty is not None:
            sampling["presence_penalty"] = request.presence_penalty
        if request.frequency_penalty is not None:
            sampling["frequency_penalty"] = request.frequency_penalty
        return _Job(tokens, limit, request.stop_list() + template_stop, seed, sampling, grammar)

    # -- blocking generation (worker thread, lock held) ---------------------------------------------
    def _generate(self, job: _Job, on_text: Callable[[str], None] | None = None) -> _Gen:
        from llama_cpp import StoppingCriteriaList

        cached = min(_lcp(self.llm.input_ids.tolist(), job.tokens[:-1]), len(job.tokens) - 1)
        kw: dict[str, Any] = {
            "prompt": job.tokens,
            "max_tokens": job.max_tokens,
            "stop": job.stop or None,
            "seed": job.seed,
            "grammar": job.grammar,
            "stopping_criteria": StoppingCriteriaList([lambda _ids, _logits: job.cancel.is_set()]),
            **job.sampling,
        }
        if on_text is None:
            out = self.llm.create_completion(**kw)
            choice = out["choices"][0]
            usage = out["usage"]
            finish = "cancelled" if job.cancel.is_set() else choice.get("finish_reason") or "stop"
            return _Gen(choice["text"], finish, usage["prompt_tokens"], usage["completion_tokens"], cached)
        parts: list[str] = []
        finish = "stop"
        for part in self.llm.create_completion(**kw, stream=True):
            ch = part["choices"][0]
            if ch.get("text"):
                parts.append(ch["text"])
                on_text(ch["text"])
            if ch.get("finish_reason"):
                finish = ch["finish_reason"]
        text = "".join(parts)
        # llama.cpp reports no usage when streaming: count the output with the model's tokenizer.
        completion = len(self.llm.tokenize(text.encode(), add_bos=False, special=True)) if text else 0
        return _Gen(text, "cancelled" if job.cancel.is_set() else finish, len(job.tokens), completion, cached)

    def _tool_step(self, request: ChatRequest, seed: int, cancel: threading.Event) -> tuple[_Gen, FunctionDef | None]:
        """Step one of a tool call: which function (``None`` = answer in text, under ``auto``)."""
        menu = tool_menu(request)
        if not isinstance(menu, ToolMenu):
            return _Gen("", "stop", 0, 0, 0), menu
        question = f"{menu.question}. Answer with the function name."
        messages = [{"role": "system", "content": question}, *_messages(request)]
        gbnf = "root ::= " + " | ".join(json.dumps(c) for c in menu.names)
        job = self._job(request, messages, seed, grammar=self._grammar(gbnf, "gbnf"), max_tokens=32)
        job.cancel = cancel
        if request.temperature is None:
            job.sampling["temperature"] = 0.0
        gen = self._generate(job)
        return gen, menu.pick(gen.text)

    def _sample(
        self, request: ChatRequest, seed: int, cancel: threading.Event
    ) -> tuple[AssistantMessage, str, CompletionUsage]:
        """One choice, blocking: a tool call, constrained JSON, or free text."""
        messages = _messages(request)
        usage = CompletionUsage.of(0, 0)
        fn: FunctionDef | None = None
        if request.tools and request.tool_choice != "none":
            pick, fn = self._tool_step(request, seed, cancel)
            usage = usage + CompletionUsage.of(pick.prompt, pick.completion, pick.cached)
        if fn is not None:
            # The grammar carries the schema. Prompt wording was measured on the 135M model: any
            # extra instruction (the schema, "call the function X") made its arguments worse, and
            # greedy decoding made them steadier, so the conversation goes in as it is.
            grammar = self._json_grammar(fn.parameters or {"type": "object"})
            allowance = max(request.token_limit or 0, self.options.tool_args_max_tokens)
            msgs = messages
            for attempt in range(2):
                job = self._job(request, msgs, seed + attempt, grammar=grammar, max_tokens=allowance * (attempt + 1))
                job.cancel = cancel
                if request.temperature is None:
                    job.sampling["temperature"] = 0.0
                gen = self._generate(job)
                usage = usage + CompletionUsage.of(gen.prompt, gen.completion, gen.cached)
                try:
                    args = strict_json(gen.text)
                except ValueError:
                    if cancel.is_set():
                        break
                    logger.info("%s: tool arguments did not parse (try %d); retrying", self.name, attempt + 1)
                    continue
                return AssistantMessage(content=None, tool_calls=[tool_call(fn.name, args)]), "tool_calls", usage
            finish = "cancelled" if cancel.is_set() else "length"
            return AssistantMessage(content=None, tool_calls=[tool_call(fn.name, gen.text)]), finish, usage
        job = self._text_job(request, messages, seed)
        job.cancel = cancel
        gen = self._generate(job)
        usage = usage + CompletionUsage.of(gen.prompt, gen.completion, gen.cached)
        return AssistantMessage(content=gen.text), gen.finish, usage

    def _text_job(self, request: ChatRequest, messages: list[dict[str, str]], seed: int) -> _Job:
        rf = request.response_format
        if rf is None or rf.type == "text":
            return self._job(request, messages, seed)
        schema = rf.json_schema.schema_ if rf.type == "json_schema" and rf.json_schema else None
        hint = "Reply with JSON only" + (f", matching this schema: {json.dumps(schema)}" if schema else ".")
        return self._job(
            request, [*messages, {"role": "system", "content": hint}], seed, grammar=self._json_grammar(schema)
        )

    # -- serialisation --------------------------------------------------------------------------------
    async def _exclusive(self, fn: Callable[[], T], cancel: threading.Event) -> T:
        """Run ``fn`` in a thread with the model to itself. If the caller is cancelled, tell the
        generation to stop and keep the lock until the thread has returned, so the next request
        never meets a generation still running on the same ``Llama``."""
        async with self._lock:
            if self._closed:
                raise EngineError(f"{self.name}: engine closed", retryable=True, status=503)
            task = asyncio.ensure_future(asyncio.to_thread(fn))
            try:
                return await asyncio.shield(task)
            except asyncio.CancelledError:
                cancel.set()
                await _drain(task)
                raise

    def _failure(self, err: Exception) -> EngineError:
        """A generation's exception as the engine's error: llama.cpp's own checks (a prompt longer
        than ``n_ctx``) raise ``ValueError``, the request's fault; anything else is the engine's."""
        if isinstance(err, ValueError):
            return EngineError(f"{self.name}: {err}", status=400)
        return EngineError(f"{self.name}: generation failed: {type(err).__name__}: {err}")

    def _seed(self, request: ChatRequest) -> int:
        return request.seed if request.seed is not None else self.options.seed

    # -- Engine -------------------------------------------------------------------------------------
    async def chat(self, request: ChatRequest) -> ChatResponse:
        choices: list[ChatChoice] = []
        usage = CompletionUsage.of(0, 0)
        base = self._seed(request)
        for i in range(request.n):
            cancel = threading.Event()
            try:
                msg, finish, u = await self._exclusive(
                    functools.partial(self._sample, request, base + i, cancel), cancel
                )
            except EngineError:
                raise
            except Exception as e:
                raise self._failure(e) from e
            choices.append(ChatChoice(index=i, message=msg, finish_reason=finish))  # type: ignore[arg-type]
            usage = usage + u
        return ChatResponse(model=self.name, choices=choices, usage=usage)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Token by token for text and JSON output (each of ``n`` samples in turn); a tool call is
        streamed once made, as one delta, because its two constrained steps are not readable text.
        Closing the stream stops the generation at the next token."""
        if request.tools and request.tool_choice != "none":
            async for chunk in super().stream(request):
                yield chunk
            return
        cid = new_completion_id()
        usage = CompletionUsage.of(0, 0)
        base = self._seed(request)
        for i in range(request.n):
            sample = self._stream_one(request, base + i, i, cid)
            try:
                async for item in sample:
                    if isinstance(item, CompletionUsage):
                        usage = usage + item
                    else:
                        yield item
            finally:
                # Closing this stream must reach the inner generator now (not at garbage
                # collection): it holds the model lock until its generation has stopped.
                await sample.aclose()  # type: ignore[attr-defined]
        yield ChatChunk(id=cid, model=self.name, choices=[], usage=usage)

    async def _stream_one(
        self, request: ChatRequest, seed: int, index: int, cid: str
    ) -> AsyncIterator[ChatChunk | CompletionUsage]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str] = asyncio.Queue()
        cancel = threading.Event()

        def emit(text: str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, text)

        def produce() -> _Gen:
            job = self._text_job(request, _messages(request), seed)
            job.cancel = cancel
            return self._generate(job, on_text=emit)

        async with self._lock:
            if self._closed:
                raise EngineError(f"{self.name}: engine closed", retryable=True, status=503)
            task = asyncio.ensure_future(asyncio.to_thread(produce))
            try:
                yield ChatChunk(
                    id=cid,
                    model=self.name,
                    choices=[ChatChunkChoice(index=index, delta=ChatDelta(role="assistant", content=""))],
                )
                while True:
                    getter = asyncio.ensure_future(queue.get())
                    done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                    if getter in done:
                        piece = getter.result()
                        yield ChatChunk(
                            id=cid,
                            model=self.name,
                            choices=[ChatChunkChoice(index=index, delta=ChatDelta(content=piece))],
                        )
                        continue
                    getter.cancel()
                    break
                while not queue.empty():  # pieces queued just before the thread returned
                    piece = queue.get_nowait()
                    yield ChatChunk(
                        id=cid, model=self.name, choices=[ChatChunkChoice(index=index, delta=ChatDelta(content=piece))]
                    )
                try:
                    gen = task.result()
                except EngineError:
                    raise
                except Exception as e:
                    raise self._failure(e) from e
                yield ChatChunk(
                    id=cid,
                    model=self.name,
                    choices=[ChatChunkChoice(index=index, delta=ChatDelta(), finish_reason=gen.finish)],  # type: ignore[arg-type]
                )
                yield CompletionUsage.of(gen.prompt, gen.completion, gen.cached)
            finally:
                # Reached on normal exit, on aclose() (client went away) and on cancellation alike:
                # stop the generation and keep the lock until the thread is done with the model.
                cancel.set()
                await _drain(task)

    async def health(self) -> None:
        if self._closed:
            raise EngineError(f"{self.name}: engine closed", retryable=True, status=503)

    async def close(self) -> None:
        async with self._lock:
            if not self._closed:
                self._closed = True
                self.llm.close()


async def _drain(task: asyncio.Future[Any]) -> None:
    """Wait for a worker thread's future even if we are cancelled meanwhile (then re-raise)."""
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
        except Exception:
            break
    if task.done() and not task.cancelled():
        with contextlib.suppress(BaseException):
            task.exception()
    if cancelled:
        raise asyncio.CancelledError
