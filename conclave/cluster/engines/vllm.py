"""``vllm``: a model on GPUs through vLLM's ``AsyncLLM``, inside a Conclave model replica (``gpu`` extra).

Why not ``ray.serve.llm``'s ``LLMServer`` as the deployment: its request and response types are its
own OpenAI server's, while every Conclave replica speaks the ``Engine`` contract (usage counted on
the replica, constrained tool calls, the same retries and health checks in the pool). So the engine
is vLLM's ``AsyncLLM`` — the engine ``ray.serve.llm`` itself runs — and the Serve placement follows
``ray.serve.llm``'s rules: one GPU per tensor- or pipeline-parallel worker, the replica and its
workers in one placement group (``STRICT_PACK`` on one node), Ray as the distributed executor
when more than one GPU is used. Prefix caching is on by default.

vLLM is imported only when an engine is built, so options validate (and ``conclave.toml`` checks
pass) on machines without it; building the engine without vLLM raises an error that says how to
install it. vLLM batches concurrent requests itself, so, unlike llama.cpp, no lock is held.
"""

from __future__ import annotations

import importlib.util
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal, Protocol

from pydantic import Field, model_validator

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


class Placed(Protocol):
    """What placing a vLLM replica needs from its model's spec (``cluster.config.ModelSpec`` has it)."""

    @property
    def name(self) -> str: ...

    @property
    def options(self) -> Mapping[str, Any]: ...

    @property
    def num_cpus(self) -> float: ...

    @property
    def num_gpus(self) -> float: ...


__all__ = ["VllmEngine", "VllmOptions", "serve_options", "vllm_available"]

logger = logging.getLogger(__name__)

_RESERVED = {
    "model",
    "tokenizer",
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "enable_prefix_caching",
    "gpu_memory_utilization",
    "max_model_len",
    "dtype",
    "quantization",
    "max_num_seqs",
    "seed",
    "trust_remote_code",
    "download_dir",
    "distributed_executor_backend",
}


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


class VllmOptions(GenerationOptions):
    """vLLM engine options; ``engine_kwargs`` passes anything else to ``AsyncEngineArgs``."""

    model: str = Field(min_length=1, description="Hugging Face id or local directory of the weights.")
    tokenizer: str | None = None
    tensor_parallel_size: int = Field(default=1, ge=1, le=64)
    pipeline_parallel_size: int = Field(default=1, ge=1, le=64)
    enable_prefix_caching: bool = True
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    max_model_len: int | None = Field(default=None, ge=16)
    dtype: Literal["auto", "half", "float16", "bfloat16", "float", "float32"] = "auto"
    quantization: str | None = None
    max_num_seqs: int | None = Field(default=None, ge=1)
    trust_remote_code: bool = False
    download_dir: str | None = None
    # Larger models than the CPU default: longer answers and strings by default.
    default_max_tokens: int = Field(default=512, ge=1, description="When a request sets no max_tokens.")
    max_string_length: int = Field(default=500, ge=1, description="maxLength for free strings in tool arguments.")
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="More AsyncEngineArgs fields.")

    @model_validator(mode="after")
    def _no_shadowing(self) -> VllmOptions:
        clash = sorted(_RESERVED & self.engine_kwargs.keys())
        if clash:
            raise ValueError(f"engine_kwargs must not set {', '.join(clash)}: use the option of that name")
        return self

    @property
    def num_gpus(self) -> int:
        """GPUs one replica needs: one per tensor- and pipeline-parallel worker."""
        return self.tensor_parallel_size * self.pipeline_parallel_size

    def engine_args(self) -> dict[str, Any]:
        """Keyword arguments for ``vllm.AsyncEngineArgs``."""
        args: dict[str, Any] = {
            "model": self.model,
            "tensor_parallel_size": self.tensor_parallel_size,
            "pipeline_parallel_size": self.pipeline_parallel_size,
            "enable_prefix_caching": self.enable_prefix_caching,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "dtype": self.dtype,
            "seed": self.seed,
            "trust_remote_code": self.trust_remote_code,
        }
        for key in ("tokenizer", "max_model_len", "quantization", "max_num_seqs", "download_dir"):
            value = getattr(self, key)
            if value is not None:
                args[key] = value
        if self.num_gpus > 1:
            # The workers are Ray actors in the replica's placement group (see serve_options).
            args["distributed_executor_backend"] = "ray"
        args.update(self.engine_kwargs)
        return args


def serve_options(spec: Placed) -> dict[str, Any]:
    """Serve deployment options a vLLM model needs beyond the generic ones: its GPUs, and for more
    than one GPU a placement group holding the replica (CPU only) and one bundle per worker."""
    opts = VllmOptions.model_validate(spec.options)
    gpus = opts.num_gpus
    if spec.num_gpus and spec.num_gpus != gpus and gpus > 1:
        raise ValueError(
            f"model {spec.name!r}: num_gpus is {spec.num_gpus} but tensor_parallel_size x pipeline_parallel_size "
            f"is {gpus}; leave num_gpus unset (0) or make them agree"
        )
    if gpus == 1:
        return {"ray_actor_options": {"num_cpus": spec.num_cpus, "num_gpus": spec.num_gpus or 1}}
    return {
        "ray_actor_options": {"num_cpus": spec.num_cpus, "num_gpus": 0},
        "placement_group_bundles": [{"CPU": spec.num_cpus}] + [{"GPU": 1} for _ in range(gpus)],
        "placement_group_strategy": "STRICT_PACK" if opts.pipeline_parallel_size == 1 else "PACK",
    }


def _messages(request: ChatRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in request.messages:
        d: dict[str, Any] = {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
        if m.tool_calls:
            d["tool_calls"] = [c.model_dump() for c in m.tool_calls]
        if m.tool_call_id:
            d["tool_call_id"] = m.tool_call_id
        out.append(d)
    return out


class VllmEngine(Engine):
    provider = "vllm"

    def __init__(self, options: VllmOptions | dict[str, Any], *, name: str = "vllm") -> None:
        self.options = VllmOptions.of(options)
        self.name = name
        if not vllm_available():
            raise EngineError(
                f"{name}: the vllm engine needs vLLM, which is not installed: pip install 'conclave[gpu]' "
                "(on a machine with a CUDA GPU)",
                status=500,
            )
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        self.engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**self.options.engine_args()))
        self._tokenizer: Any = None

    # -- request translation ------------------------------------------------------------------------
    async def _prompt(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> str:
        if self._tokenizer is None:
            self._tokenizer = await self.engine.get_tokenizer()
        prompt: str = self._tokenizer.apply_chat_template(
            messages, tools=tools, tokenize=False, add_generation_prompt=True
        )
        return prompt

    def _params(
        self,
        request: ChatRequest,
        *,
        n: int,
        seed: int | None,
        json_schema: Any = None,
        choice: list[str] | None = None,
    ) -> Any:
        from vllm import SamplingParams

        kw: dict[str, Any] = {
            "n": n,
            "max_tokens": request.token_limit or self.options.default_max_tokens,
            "seed": seed,
            "stop": request.stop_list() or None,
        }
        for key in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
            value = getattr(request, key)
            if value is not None:
                kw[key] = value
        if json_schema is not None or choice is not None:
            constraint = {"json": json_schema} if json_schema is not None else {"choice": choice}
            try:  # vLLM >= 0.10.2
                from vllm.sampling_params import StructuredOutputsParams

                kw["structured_outputs"] = StructuredOutputsParams(**constraint)
            except ImportError:  # older vLLM
                from vllm.sampling_params import GuidedDecodingParams

                kw["guided_decoding"] = GuidedDecodingParams(**constraint)
        return SamplingParams(**kw)

    async def _run(self, prompt: str, params: Any) -> Any:
        """One generation to the end; closing early (cancellation) aborts it in vLLM."""
        request_id = uuid.uuid4().hex
        final = None
        try:
            async for out in self.engine.generate(prompt, params, request_id):
                final = out
        except BaseException:
            await self.engine.abort(request_id)
            raise
        if final is None:
            raise EngineError(f"{self.name}: vLLM returned no output", retryable=True)
        return final

    @staticmethod
    def _usage(out: Any) -> CompletionUsage:
        completion = sum(len(o.token_ids) for o in out.outputs)
        return CompletionUsage.of(len(out.prompt_token_ids or []), completion, int(out.num_cached_tokens or 0))

    def _schema(self, request: ChatRequest) -> Any:
        rf = request.response_format
        if rf is None or rf.type == "text":
            return None
        if rf.type == "json_schema" and rf.json_schema is not None:
            return rf.json_schema.schema_ or {"type": "object"}
        return {"type": "object"}

    async def _tool_choice(self, request: ChatRequest, seed: int | None) -> tuple[FunctionDef | None, CompletionUsage]:
        menu = tool_menu(request)
        if not isinstance(menu, ToolMenu):
            return menu, CompletionUsage.of(0, 0)
        prompt = await self._prompt([{"role": "system", "content": menu.question + "."}, *_messages(request)])
        pick = ChatRequest(messages=request.messages, max_tokens=16, temperature=request.temperature or 0.0)
        out = await self._run(prompt, self._params(pick, n=1, seed=seed, choice=menu.names))
        return menu.pick(out.outputs[0].text), self._usage(out)

    # -- Engine ---------------------------------------------------------------------------------------
    async def chat(self, request: ChatRequest) -> ChatResponse:
        """Text or JSON: one generation with ``n`` samples (vLLM batches them). A tool call: the
        function is chosen under a ``choice`` constraint, then its arguments are generated under
        the function's JSON schema, as in the llama.cpp engine."""
        seed = request.seed if request.seed is not None else self.options.seed
        usage = CompletionUsage.of(0, 0)
        choices: list[ChatChoice] = []
        if request.tools and request.tool_choice != "none":
            for i in range(request.n):
                fn, u = await self._tool_choice(request, seed + i)
                usage = usage + u
                if fn is None:
                    prompt = await self._prompt(_messages(request))
                    out = await self._run(prompt, self._params(request, n=1, seed=seed + i))
                    usage = usage + self._usage(out)
                    o = out.outputs[0]
                    choices.append(
                        ChatChoice(index=i, message=AssistantMessage(content=o.text), finish_reason=_finish(o))
                    )
                    continue
                prompt = await self._prompt(_messages(request))
                schema = bound_strings(fn.parameters or {"type": "object"}, self.options.max_string_length)
                out = await self._run(prompt, self._params(request, n=1, seed=seed + i, json_schema=schema))
                usage = usage + self._usage(out)
                text = out.outputs[0].text
                try:
                    args, finish = strict_json(text), "tool_calls"
                except ValueError:
                    args, finish = text, "length"
                message = AssistantMessage(tool_calls=[tool_call(fn.name, args)])
                choices.append(ChatChoice(index=i, message=message, finish_reason=finish))  # type: ignore[arg-type]
            return ChatResponse(model=self.name, choices=choices, usage=usage)
        prompt = await self._prompt(_messages(request))
        out = await self._run(prompt, self._params(request, n=request.n, seed=seed, json_schema=self._schema(request)))
        for i, o in enumerate(out.outputs):
            choices.append(ChatChoice(index=i, message=AssistantMessage(content=o.text), finish_reason=_finish(o)))
        return ChatResponse(model=self.name, choices=choices, usage=self._usage(out))

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Token deltas for text and JSON output (all ``n`` samples interleaved, by index); tool
        calls arrive whole. Closing the stream aborts the request in vLLM."""
        if request.tools and request.tool_choice != "none":
            async for chunk in super().stream(request):
                yield chunk
            return
        seed = request.seed if request.seed is not None else self.options.seed
        prompt = await self._prompt(_messages(request))
        params = self._params(request, n=request.n, seed=seed, json_schema=self._schema(request))
        params.output_kind = _delta_kind()
        cid, request_id = new_completion_id(), uuid.uuid4().hex
        final = None
        sent_role: set[int] = set()
        tokens: dict[int, int] = {}
        try:
            async for out in self.engine.generate(prompt, params, request_id):
                final = out
                for o in out.outputs:
                    tokens[o.index] = tokens.get(o.index, 0) + len(o.token_ids)
                    delta = ChatDelta(content=o.text)
                    if o.index not in sent_role:
                        sent_role.add(o.index)
                        delta.role = "assistant"
                    reason = _finish(o) if o.finish_reason else None
                    yield ChatChunk(
                        id=cid,
                        model=self.name,
                        choices=[ChatChunkChoice(index=o.index, delta=delta, finish_reason=reason)],
                    )
        except BaseException:
            await self.engine.abort(request_id)
            raise
        prompt_tokens = len(final.prompt_token_ids or []) if final is not None else 0
        cached = int(final.num_cached_tokens or 0) if final is not None else 0
        yield ChatChunk(
            id=cid, model=self.name, choices=[], usage=CompletionUsage.of(prompt_tokens, sum(tokens.values()), cached)
        )

    async def health(self) -> None:
        try:
            await self.engine.check_health()
        except Exception as e:
            raise EngineError(f"{self.name}: vLLM engine unhealthy: {e}", retryable=True, status=503) from e

    async def close(self) -> None:
        self.engine.shutdown()


def _delta_kind() -> Any:
    from vllm.sampling_params import RequestOutputKind

    return RequestOutputKind.DELTA


def _finish(output: Any) -> Any:
    reason = output.finish_reason
    if reason == "abort":
        return "cancelled"
    return reason if reason in ("stop", "length") else "stop"
