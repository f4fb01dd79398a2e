"""The llama.cpp engine on the real bundled SmolLM2-135M: mechanics (token counts, constrained
outputs that parse, seeds, streaming, cancellation, serialisation), never the prose."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from conclave.cluster.defaults import default_model_spec
from conclave.cluster.engines import build_engine
from conclave.cluster.engines.constrained import bound_strings
from conclave.cluster.engines.llamacpp import LlamaCppEngine
from conclave.schema.chat import ChatRequest

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a file",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    },
]


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[LlamaCppEngine]:
    e = build_engine(default_model_spec())
    assert isinstance(e, LlamaCppEngine)
    yield e
    await e.close()


def _req(text: str = "What is the capital of France?", **kw: object) -> ChatRequest:
    return ChatRequest.model_validate({"messages": [{"role": "user", "content": text}], **kw})


async def test_usage_is_the_engines_count(engine: LlamaCppEngine) -> None:
    r = await engine.chat(_req(max_tokens=12))
    assert r.usage.prompt_tokens > 5 and 0 < r.usage.completion_tokens <= 12
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    again = await engine.chat(_req(max_tokens=4))
    assert again.usage.cached_tokens == again.usage.prompt_tokens - 1  # the same prompt: KV reused


async def test_n_and_seed(engine: LlamaCppEngine) -> None:
    a = await engine.chat(_req(max_tokens=8, n=2, seed=7, temperature=1.0))
    b = await engine.chat(_req(max_tokens=8, n=2, seed=7, temperature=1.0))
    assert [c.index for c in a.choices] == [0, 1]
    assert [c.message.content for c in a.choices] == [c.message.content for c in b.choices]
    assert a.usage.prompt_tokens == 2 * (await engine.chat(_req(max_tokens=1))).usage.prompt_tokens


async def test_json_schema_output_parses(engine: LlamaCppEngine) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
    }
    r = await engine.chat(
        _req(max_tokens=96, response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}})
    )
    data = json.loads(r.message.content or "")
    assert isinstance(data["city"], str) and isinstance(data["population"], int)


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
async def test_tool_calls_parse(engine: LlamaCppEngine, choice: object) -> None:
    r = await engine.chat(_req("What is the weather in Paris?", tools=TOOLS, tool_choice=choice))
    calls = r.message.tool_calls
    assert calls and r.choices[0].finish_reason == "tool_calls"
    assert calls[0].function.name in {"read_file", "get_weather"}
    args = json.loads(calls[0].function.arguments)
    expected = "city" if calls[0].function.name == "get_weather" else "path"
    assert isinstance(args[expected], str)
    if isinstance(choice, dict):
        assert calls[0].function.name == "get_weather"


async def test_tool_choice_auto_either_calls_or_answers(engine: LlamaCppEngine) -> None:
    r = await engine.chat(_req("Say hello", tools=TOOLS, tool_choice="auto", max_tokens=16))
    msg = r.message
    assert (msg.tool_calls and json.loads(msg.tool_calls[0].function.arguments) is not None) or msg.content


async def test_tool_choice_none_answers_in_text(engine: LlamaCppEngine) -> None:
    r = await engine.chat(_req(tools=TOOLS, tool_choice="none", max_tokens=8))
    assert r.message.tool_calls is None and r.message.content


async def test_stream_matches_usage(engine: LlamaCppEngine) -> None:
    chunks = [c async for c in engine.stream(_req(max_tokens=16, seed=3))]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    usage = chunks[-1].usage
    assert usage.prompt_tokens > 5 and 0 < usage.completion_tokens <= 16 and text
    finished = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finished in (["stop"], ["length"])


async def test_closing_a_stream_aborts_and_frees_the_model(engine: LlamaCppEngine) -> None:
    agen = engine.stream(_req("Write a long story about a dragon.", max_tokens=400))
    seen = 0
    async for _ in agen:
        seen += 1
        if seen == 4:
            break
    await agen.aclose()  # type: ignore[attr-defined]
    assert not engine._lock.locked()
    r = await engine.chat(_req(max_tokens=4))
    assert r.usage.completion_tokens > 0


async def test_cancelling_a_call_waits_for_the_generation_to_stop(engine: LlamaCppEngine) -> None:
    task = asyncio.create_task(engine.chat(_req("Write a long story about a dragon.", max_tokens=400)))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The next calls run one at a time on the same Llama; running two at once would abort the process.
    results = await asyncio.gather(*(engine.chat(_req(max_tokens=6)) for _ in range(3)))
    assert all(r.usage.completion_tokens > 0 for r in results)


async def test_prompt_longer_than_the_context_is_a_400(engine: LlamaCppEngine) -> None:
    from conclave.schema.chat import EngineError

    with pytest.raises(EngineError) as e:
        await engine.chat(_req("word " * 5000))
    assert e.value.status == 400 and "context window" in str(e.value)


def test_bound_strings() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "string"},
            "b": {"type": "string", "enum": ["x"]},
            "c": {"type": "array", "items": {"type": "string", "maxLength": 5}},
        },
    }
    out = bound_strings(schema, 50)
    assert out["properties"]["a"]["maxLength"] == 50
    assert "maxLength" not in out["properties"]["b"]
    assert out["properties"]["c"]["items"]["maxLength"] == 5
    assert "maxLength" not in schema["properties"]["a"]  # the input is not modified
