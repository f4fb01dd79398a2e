"""The ``openai_http`` engine against real HTTP servers on 127.0.0.1: Conclave's own OpenAI
endpoint serving the ``sim`` engine, and small FastAPI apps that answer 429/5xx on purpose."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError

from conclave.cluster.config import ModelSpec
from conclave.cluster.engines import build_engine
from conclave.cluster.engines.openai_http import OpenAIHttpEngine, OpenAIHttpOptions
from conclave.cluster.engines.sim import SimEngine
from conclave.cluster.router import LocalRouter
from conclave.schema.chat import ChatRequest, EngineError

from ._cluster_http import openai_app, serve_http


def _req(text: str = "alpha beta gamma", **kw: object) -> ChatRequest:
    return ChatRequest.model_validate({"messages": [{"role": "user", "content": text}], **kw})


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    router = LocalRouter(
        {
            "echo": SimEngine({"mode": "echo"}, name="echo"),
            "tools": SimEngine({"mode": "tool_loop"}, name="tools"),
        }
    )
    with serve_http(openai_app(router)) as url:
        yield f"{url}/v1"


async def test_chat_reads_usage_from_the_server(upstream: str) -> None:
    engine = OpenAIHttpEngine({"base_url": upstream, "model": "echo"}, name="remote")
    r = await engine.chat(_req(n=2))
    assert [c.message.content for c in r.choices] == ["alpha beta gamma"] * 2
    assert r.model == "remote"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (7, 6)
    await engine.close()


async def test_stream_asks_for_usage(upstream: str) -> None:
    engine = OpenAIHttpEngine({"base_url": upstream, "model": "echo"})
    chunks = [c async for c in engine.stream(_req())]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "alpha beta gamma"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3  # the server's count, sent because we asked
    await engine.close()


async def test_tool_calls_round_trip(upstream: str) -> None:
    engine = OpenAIHttpEngine({"base_url": upstream, "model": "tools"})
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    r = await engine.chat(_req(tools=tools))
    assert r.choices[0].finish_reason == "tool_calls"
    assert r.message.tool_calls and json.loads(r.message.tool_calls[0].function.arguments) == {"q": "q0"}
    await engine.close()


async def test_client_errors_are_not_retried(upstream: str) -> None:
    engine = OpenAIHttpEngine({"base_url": upstream, "model": "missing", "backoff_s": 0})
    with pytest.raises(EngineError) as e:
        await engine.chat(_req())
    assert e.value.status == 404 and not e.value.retryable
    assert "known models: echo, tools" in str(e.value)
    await engine.close()


class Flaky:
    """Fails the first ``fail`` calls with ``status`` (and a Retry-After), then answers."""

    def __init__(self, fail: int, status: int, retry_after: str | None = "0") -> None:
        self.fail, self.status, self.retry_after = fail, status, retry_after
        self.calls = 0
        self.auth: list[str | None] = []
        self.bodies: list[dict[str, object]] = []
        self.app = FastAPI()
        self.app.post("/v1/chat/completions")(self.handle)

    async def handle(self, request: Request) -> Response:
        self.calls += 1
        self.auth.append(request.headers.get("authorization"))
        body = await request.json()
        self.bodies.append(body)
        if self.calls <= self.fail:
            headers = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
            return JSONResponse({"error": {"message": "slow down"}}, status_code=self.status, headers=headers)
        if body.get("stream"):
            # A server that ignores include_usage: the engine must still report usage.
            events = [
                {"id": "c1", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi there"}}]},
                {"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            ]
            data = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
            return StreamingResponse(iter([data]), media_type="text/event-stream")
        return JSONResponse(
            {
                "id": "c1",
                "object": "chat.completion",
                "created": 1,
                "model": "m",
                "service_tier": "default",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "ok", "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": 5,
                    "completion_tokens": 1,
                    "total_tokens": 6,
                    "prompt_tokens_details": {"cached_tokens": 3},
                },
            }
        )


async def test_retries_429_honouring_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCLAVE_TEST_KEY", "sk-test")
    flaky = Flaky(fail=2, status=429, retry_after="0")
    with serve_http(flaky.app) as url:
        engine = OpenAIHttpEngine(
            {"base_url": f"{url}/v1", "api_key_env": "CONCLAVE_TEST_KEY", "backoff_s": 30}, name="m"
        )
        r = await engine.chat(_req())  # backoff_s=30 would hang: Retry-After: 0 is what is honoured
        await engine.close()
    assert flaky.calls == 3
    assert flaky.auth == ["Bearer sk-test"] * 3
    assert r.message.content == "ok"
    assert (r.usage.prompt_tokens, r.usage.cached_tokens) == (5, 3)  # extra server fields tolerated


async def test_5xx_exhaustion_is_retryable() -> None:
    flaky = Flaky(fail=100, status=503, retry_after=None)
    with serve_http(flaky.app) as url:
        engine = OpenAIHttpEngine({"base_url": f"{url}/v1", "max_retries": 2, "backoff_s": 0})
        with pytest.raises(EngineError) as e:
            await engine.chat(_req())
        await engine.close()
    assert flaky.calls == 3
    assert e.value.retryable and e.value.status == 503 and "slow down" in str(e.value)


async def test_stream_without_server_usage_is_estimated() -> None:
    flaky = Flaky(fail=0, status=200)
    with serve_http(flaky.app) as url:
        engine = OpenAIHttpEngine({"base_url": f"{url}/v1"})
        chunks = [c async for c in engine.stream(_req())]
        await engine.close()
    assert flaky.bodies[0]["stream_options"] == {"include_usage": True}
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens > 0 and usage.prompt_tokens > 0


async def test_unreachable_server_is_retryable() -> None:
    from conclave.controller.redis_server import free_port

    engine = OpenAIHttpEngine({"base_url": f"http://127.0.0.1:{free_port()}/v1", "max_retries": 1, "backoff_s": 0})
    with pytest.raises(EngineError) as e:
        await engine.chat(_req())
    assert e.value.retryable
    with pytest.raises(EngineError):
        await engine.health()
    await engine.close()


async def test_missing_api_key_env_is_named() -> None:
    engine = OpenAIHttpEngine({"base_url": "http://127.0.0.1:9/v1", "api_key_env": "CONCLAVE_SURELY_UNSET_KEY"})
    with pytest.raises(EngineError, match="CONCLAVE_SURELY_UNSET_KEY"):
        await engine.chat(_req())


def test_options_are_validated_with_the_field_named() -> None:
    with pytest.raises(ValidationError, match="base_url"):
        OpenAIHttpOptions.model_validate({"base_url": "ftp://x"})
    with pytest.raises(ValidationError, match="api_key_env"):
        OpenAIHttpOptions.model_validate({"base_url": "http://x/v1", "api_key_env": "sk-abc-123"})
    with pytest.raises(ValidationError, match="extra"):
        ModelSpec(name="m", engine="openai_http", options={"base_url": "http://x/v1", "apikey": "oops"})


def test_build_engine_from_spec() -> None:
    spec = ModelSpec(name="gpt-x", engine="openai_http", options={"base_url": "http://127.0.0.1:1/v1/"})
    engine = build_engine(spec)
    assert isinstance(engine, OpenAIHttpEngine)
    assert engine.remote_model == "gpt-x" and engine.options.base_url == "http://127.0.0.1:1/v1"
