"""The vLLM engine on a real GPU. Skipped (a stated limitation of CPU-only CI) unless vLLM is
installed, a CUDA device is visible and ``CONCLAVE_VLLM_TEST_MODEL`` names weights that are
already on local disk (nothing is downloaded by tests)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator

import pytest

from conclave.cluster.engines.vllm import VllmEngine, vllm_available
from conclave.schema.chat import ChatRequest

MODEL = os.environ.get("CONCLAVE_VLLM_TEST_MODEL")


def _has_gpu() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not vllm_available(), reason="vLLM is not installed (the gpu extra)"),
    pytest.mark.skipif(not _has_gpu(), reason="no CUDA GPU"),
    pytest.mark.skipif(not MODEL, reason="set CONCLAVE_VLLM_TEST_MODEL to a local model directory"),
]


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[VllmEngine]:
    e = VllmEngine({"model": MODEL, "gpu_memory_utilization": 0.5, "max_model_len": 4096}, name="gpu")
    yield e
    await e.close()


def _req(**kw: object) -> ChatRequest:
    return ChatRequest.model_validate({"messages": [{"role": "user", "content": "Name a colour."}], **kw})


async def test_chat_counts_tokens(engine: VllmEngine) -> None:
    r = await engine.chat(_req(max_tokens=16, n=2, seed=1))
    assert len(r.choices) == 2
    assert r.usage.prompt_tokens > 0 and 0 < r.usage.completion_tokens <= 32


async def test_prefix_cache_reports_cached_tokens(engine: VllmEngine) -> None:
    long = "Background: " + "the sky is blue. " * 100
    req = ChatRequest.model_validate(
        {"messages": [{"role": "system", "content": long}, {"role": "user", "content": "ok"}], "max_tokens": 4}
    )
    await engine.chat(req)
    r = await engine.chat(req)
    assert r.usage.cached_tokens > 0


async def test_json_schema_and_tools(engine: VllmEngine) -> None:
    schema = {"type": "object", "properties": {"colour": {"type": "string"}}, "required": ["colour"]}
    r = await engine.chat(
        _req(max_tokens=64, response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}})
    )
    assert "colour" in json.loads(r.message.content or "")
    tools = [{"type": "function", "function": {"name": "paint", "parameters": schema}}]
    r = await engine.chat(_req(max_tokens=64, tools=tools, tool_choice="required"))
    assert r.message.tool_calls and "colour" in json.loads(r.message.tool_calls[0].function.arguments)


async def test_stream_and_abort(engine: VllmEngine) -> None:
    chunks = [c async for c in engine.stream(_req(max_tokens=16))]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    agen = engine.stream(_req(max_tokens=512))
    async for _ in agen:
        break
    await agen.aclose()
    r = await engine.chat(_req(max_tokens=4))
    assert r.usage.completion_tokens > 0
