"""The ``openai_http`` engine against real HTTP servers on 127.0.0.1: Conclave's own OpenAI
endpoint serving the ``sim`` engine, and small FastAPI apps that answer 429/5xx on purpose. The
engine tries once; the router retries under the model's one policy, so a call's tries never multiply."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from conclave.cluster.config import ModelSpec
from conclave.cluster.engines import build_engine
from conclave.cluster.engines.openai_http import OpenAIHttpEngine, OpenAIHttpOptions
from conclave.cluster.engines.sim import SimEngine
from conclave.cluster.retry import RetryPolicy
from conclave.cluster.router import LocalRouter
from conclave.schema.chat import ChatRequest, EngineError, NoHealthyReplica

from ._cluster_http import Flaky, openai_app, serve_http


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


async def test_client_errors_are_not_retryable(upstream: str) -> None:
    engine = OpenAIHttpEngine({"base_url": upstream, "model": "missing"})
    with pytest.raises(EngineError) as e:
        await engine.chat(_req())
    assert e.value.status == 404 and not e.value.retryable
    assert "known models: echo, tools" in str(e.value)
    await engine.close()


def _routed(url: str, policy: RetryPolicy | None, **options: object) -> tuple[LocalRouter, OpenAIHttpEngine]:
    engine = OpenAIHttpEngine({"base_url": f"{url}/v1", **options}, name="m")
    return LocalRouter({"m": engine}, retry={"m": policy} if policy else None), engine


async def test_the_engine_tries_once_and_says_what_the_server_asked() -> None:
    flaky = Flaky(fail=100, status=429, retry_after="7")
    with serve_http(flaky.app) as url:
        engine = OpenAIHttpEngine({"base_url": f"{url}/v1"})
        with pytest.raises(EngineError) as e:
            await engine.chat(_req())
        await engine.close()
    assert flaky.calls == 1
    assert e.value.retryable and e.value.status == 429 and e.value.retry_after_s == 7.0
    assert "slow down" in str(e.value)


async def test_a_retryable_error_is_retried_up_to_the_policy_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCLAVE_TEST_KEY", "sk-test")
    flaky = Flaky(fail=100, status=503, retry_after=None)
    with serve_http(flaky.app) as url:
        router, engine = _routed(url, RetryPolicy(attempts=3, backoff_s=0), api_key_env="CONCLAVE_TEST_KEY")
        with pytest.raises(NoHealthyReplica) as e:
            await router.chat("m", _req())
        await engine.close()
    assert flaky.calls == 3  # the policy's three tries, not three router tries of several engine tries
    assert flaky.auth == ["Bearer sk-test"] * 3
    assert e.value.retryable and e.value.status == 503 and "3 attempts failed" in str(e.value)
    assert "slow down" in str(e.value)


async def test_a_non_retryable_error_is_tried_once() -> None:
    flaky = Flaky(fail=100, status=400, retry_after=None)
    with serve_http(flaky.app) as url:
        router, engine = _routed(url, RetryPolicy(attempts=5, backoff_s=0))
        with pytest.raises(EngineError) as e:
            await router.chat("m", _req())
        await engine.close()
    assert flaky.calls == 1
    assert type(e.value) is EngineError and e.value.status == 400 and not e.value.retryable


async def test_retry_after_is_honoured_and_usage_read() -> None:
    flaky = Flaky(fail=2, status=429, retry_after="0")
    with serve_http(flaky.app) as url:
        # backoff_s=30 would hang: Retry-After: 0 is what is honoured
        router, engine = _routed(url, RetryPolicy(attempts=3, backoff_s=30, max_backoff_s=30))
        r = await router.chat("m", _req())
        await engine.close()
    assert flaky.calls == 3
    assert r.message.content == "ok"
    assert (r.usage.prompt_tokens, r.usage.cached_tokens) == (5, 3)  # extra server fields tolerated


async def test_a_stream_is_retried_before_its_first_chunk() -> None:
    flaky = Flaky(fail=1, status=502, retry_after=None)
    with serve_http(flaky.app) as url:
        router, engine = _routed(url, RetryPolicy(attempts=2, backoff_s=0))
        chunks = [c async for c in router.stream("m", _req())]
        await engine.close()
    assert flaky.calls == 2
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "hi there"


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

    engine = OpenAIHttpEngine({"base_url": f"http://127.0.0.1:{free_port()}/v1"})
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


def test_engine_retry_options_of_old_configs_become_the_models_policy() -> None:
    spec = ModelSpec(
        name="m",
        engine="openai_http",
        options={"base_url": "http://x/v1", "max_retries": 5, "backoff_s": 0.1, "max_retry_after_s": 9},
    )
    assert spec.retry == RetryPolicy(attempts=6, backoff_s=0.1, max_retry_after_s=9)
    assert "max_retries" not in spec.options
    given = ModelSpec(
        name="m", engine="openai_http", options={"base_url": "http://x/v1", "max_retries": 5}, retry={"attempts": 2}
    )
    assert given.retry.attempts == 2
    with pytest.raises(ValidationError, match="extra"):
        ModelSpec(name="m", engine="sim", options={"max_retries": 5})  # only openai_http ever had them


def test_build_engine_from_spec() -> None:
    spec = ModelSpec(name="gpt-x", engine="openai_http", options={"base_url": "http://127.0.0.1:1/v1/"})
    engine = build_engine(spec)
    assert isinstance(engine, OpenAIHttpEngine)
    assert engine.remote_model == "gpt-x" and engine.options.base_url == "http://127.0.0.1:1/v1"
