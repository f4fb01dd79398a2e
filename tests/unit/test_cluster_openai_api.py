"""The OpenAI-compatible endpoint, exercised with the official ``openai`` client over real HTTP
(uvicorn on 127.0.0.1) against the ``sim`` engine, whose outputs and token counts are known."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from conclave.cluster.engines.sim import SimEngine
from conclave.cluster.router import LocalRouter
from conclave.schema.chat import AssistantMessage, ChatChoice, ChatRequest, ChatResponse, CompletionUsage

from ._cluster_http import openai_app, serve_http

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look a word up",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
        },
    }
]


async def _ensemble(name: str, request: ChatRequest, tenant: str) -> ChatResponse:
    return ChatResponse(
        model=name,
        choices=[ChatChoice(index=0, message=AssistantMessage(content=f"ensemble {name} says hi"))],
        usage=CompletionUsage.of(3, 4),
    )


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    router = LocalRouter(
        {
            "echo": SimEngine({"mode": "echo"}, name="echo"),
            "tools": SimEngine({"mode": "tool_loop", "steps": 2, "final": "done"}, name="tools"),
            "json": SimEngine({"mode": "script", "replies": [{"content": '{"city": "Paris", "population": 2}'}]}),
            "dice": SimEngine(
                {"mode": "sample", "replies": [{"content": "one"}, {"content": "two"}, {"content": "three"}]}
            ),
        }
    )
    with serve_http(openai_app(router, default_model="echo", ensemble_chat=_ensemble)) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="x", max_retries=0)


def test_models_list(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == ["echo", "tools", "json", "dice"]
    assert client.models.retrieve("echo").id == "echo"


def test_plain_chat_has_usage(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hello there world"}])
    assert r.choices[0].message.content == "hello there world"
    assert r.model == "echo"
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (7, 3, 10)


def test_requests_are_routed_by_model_name(client: openai.OpenAI) -> None:
    a = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "ping"}])
    b = client.chat.completions.create(model="json", messages=[{"role": "user", "content": "ping"}])
    assert a.choices[0].message.content == "ping"
    assert json.loads(b.choices[0].message.content or "") == {"city": "Paris", "population": 2}


def test_streaming_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "one two three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3
    assert all(c.usage is None for c in chunks[:-1])


def test_streaming_without_usage_sends_none(base_url: str) -> None:
    body = {"model": "echo", "messages": [{"role": "user", "content": "a b"}], "stream": True}
    with httpx.stream("POST", f"{base_url}/v1/chat/completions", json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line[6:]) for line in lines[:-1]]
    assert all("usage" not in e for e in events)


def test_tools_and_tool_calls(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="tools", messages=[{"role": "user", "content": "find cats"}], tools=TOOLS, tool_choice="auto"
    )
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "lookup" and json.loads(call.function.arguments) == {"q": "q0"}
    follow = client.chat.completions.create(
        model="tools",
        messages=[
            {"role": "user", "content": "find cats"},
            {"role": "assistant", "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "cats are mammals"},
        ],
        tools=TOOLS,
    )
    assert follow.choices[0].message.content == "done"


def test_streamed_tool_calls(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="tools", messages=[{"role": "user", "content": "x"}], tools=TOOLS, stream=True
        )
    )
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls and calls[0].function.name == "lookup"


def test_n_samples_and_seed(client: openai.OpenAI) -> None:
    kw = {"model": "dice", "messages": [{"role": "user", "content": "roll"}], "n": 5, "seed": 11}
    a = client.chat.completions.create(**kw)  # type: ignore[call-overload]
    b = client.chat.completions.create(**kw)  # type: ignore[call-overload]
    assert [c.index for c in a.choices] == [0, 1, 2, 3, 4]
    assert [c.message.content for c in a.choices] == [c.message.content for c in b.choices]


def test_json_schema_response_format(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="json",
        messages=[{"role": "user", "content": "city?"}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "city", "schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
        },
    )
    assert json.loads(r.choices[0].message.content or "")["city"] == "Paris"


def test_default_model_when_none_named(base_url: str) -> None:
    r = httpx.post(f"{base_url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "hey"}]})
    assert r.status_code == 200 and r.json()["model"] == "echo"


def test_unknown_model_is_404_listing_known(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    err = e.value.body
    assert isinstance(err, dict)
    assert err["code"] == "model_not_found" and err["param"] == "model"
    assert "known models: dice, echo, json, tools" in err["message"]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}], stream=True)


def test_ensemble_models(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="ensemble/panel", messages=[{"role": "user", "content": "x"}])
    assert r.choices[0].message.content == "ensemble panel says hi" and r.model == "ensemble/panel"
    chunks = list(
        client.chat.completions.create(model="ensemble/panel", messages=[{"role": "user", "content": "x"}], stream=True)
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "ensemble panel says hi"


def test_ensemble_without_provider_is_404() -> None:
    with serve_http(openai_app(LocalRouter({"echo": SimEngine()}))) as url:
        r = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "ensemble/x", "messages": [{"role": "user", "content": "x"}]},
        )
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"model": "echo", "messages": []}, "messages", "at least 1 item"),
        ({"model": "echo", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", "'system'"),
        ({"model": "echo", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens", "greater"),
        (
            {
                "model": "echo",
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}],
            },
            "tools[0].function.parameters",
            "type 'object'",
        ),
        ({"model": "echo", "messages": [{"role": "tool", "content": "x"}]}, "messages[0]", "tool_call_id"),
        ({"model": "echo", "messages": [{"role": "user", "content": "x"}], "n": 0}, "n", "greater"),
    ],
)
def test_bad_requests_name_the_field(base_url: str, body: dict[str, object], param: str, fragment: str) -> None:
    r = httpx.post(f"{base_url}/v1/chat/completions", json=body)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert err["param"] == param
    assert fragment in err["message"] and param in err["message"]


def test_bad_request_through_the_openai_client(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "x"}], max_tokens=0)
    assert isinstance(e.value.body, dict) and e.value.body["param"] == "max_tokens"


def test_body_not_json(base_url: str) -> None:
    r = httpx.post(
        f"{base_url}/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]


def test_engine_errors_keep_their_status() -> None:
    router = LocalRouter({"small": SimEngine({"context_window": 16}, name="small")})
    with serve_http(openai_app(router)) as url:
        c = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.BadRequestError) as e:
            c.chat.completions.create(model="small", messages=[{"role": "user", "content": "w " * 40}])
    assert "context window" in str(e.value)
