"""The OpenAI-compatible endpoint behind the same keys as the run API, over real HTTP (uvicorn on
127.0.0.1) with the official ``openai`` client; the caller's tenant reaches the handler; ensembles
called there are refused over the ceiling and held to it when they run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from conclave.agents.ensemble import load_named
from conclave.api.auth import Authenticator, Caller, install_authenticator
from conclave.api.ceiling import worst_case
from conclave.api.ingress import build_fastapi, make_ensemble_chat
from conclave.api.openai_compat import build_openai_router
from conclave.budgets.pricing import Pricing
from conclave.cluster.engines.sim import SimEngine
from conclave.cluster.router import LocalRouter
from conclave.controller.calls import EndpointCalls
from conclave.controller.redis_server import EmbeddedRedis
from conclave.controller.redis_store import RedisRunStore
from conclave.controller.service import RunService
from conclave.core.memory import InMemoryRunStore
from conclave.schema.chat import (
    AssistantMessage,
    ChatChoice,
    ChatRequest,
    ChatResponse,
    CompletionUsage,
)

from ._helpers import serve_http, sim_settings
from ._keys import new_key

HELLO = [{"role": "user", "content": "hello there"}]


@pytest.fixture
async def keys(redis_server: EmbeddedRedis, prefix: str) -> AsyncIterator[dict[str, str]]:
    a = await new_key(redis_server.url, prefix, "tenant-a", name="a")
    revoked = await new_key(redis_server.url, prefix, "tenant-a", name="old", revoked=True)
    yield {"a": a.key, "revoked": revoked.key}


def _client(base: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)


async def test_the_openai_endpoint_needs_a_key_and_the_openai_client_raises_authentication_error(
    redis_server: EmbeddedRedis, prefix: str, keys: dict[str, str]
) -> None:
    settings = sim_settings(prefix, auth=True)
    with serve_http(build_fastapi(settings, redis_server.url, router_mode="local")) as base:

        def use() -> None:
            calls = [
                lambda c: c.models.list(),
                lambda c: c.models.retrieve("sim"),
                lambda c: c.chat.completions.create(model="sim", messages=HELLO),
                lambda c: c.chat.completions.create(model="sim", messages=HELLO, stream=True),
                lambda c: c.chat.completions.create(model="ensemble/best-of-n-local", messages=HELLO),
            ]
            for bad in ("cvk_wrong", keys["revoked"]):
                for call in calls:
                    with pytest.raises(openai.AuthenticationError) as ei:
                        call(_client(base, bad))
                    body = ei.value.body
                    assert isinstance(body, dict) and body["code"] == "invalid_api_key", body
            good = _client(base, keys["a"])
            assert [m.id for m in good.models.list()] == ["sim"]
            r = good.chat.completions.create(model="sim", messages=HELLO, max_tokens=16)
            assert r.choices[0].message.content
            e = good.chat.completions.create(model="ensemble/best-of-n-local", messages=HELLO, max_tokens=16)
            assert e.model == "ensemble/best-of-n-local" and e.choices[0].message.content
            # Without any key (the openai client always sends one): 401 in OpenAI's shape too.
            for method, path, body in [
                ("GET", "/v1/models", None),
                ("GET", "/v1/models/sim", None),
                ("POST", "/v1/chat/completions", {"model": "sim", "messages": HELLO}),
                ("POST", "/v1/chat/completions", {"model": "sim", "messages": HELLO, "stream": True}),
                ("POST", "/v1/chat/completions", {"model": "ensemble/best-of-n-local", "messages": HELLO}),
            ]:
                raw = httpx.request(method, f"{base}{path}", json=body)
                assert raw.status_code == 401, (path, raw.text)
                assert raw.json()["error"]["type"] == "authentication_error"
                assert raw.headers["www-authenticate"] == "Bearer"
            ok = httpx.get(f"{base}/v1/models", headers={"x-api-key": keys["a"]})
            assert ok.status_code == 200 and ok.json()["data"][0]["id"] == "sim"

        await asyncio.to_thread(use)


async def test_each_call_knows_its_tenant(redis_server: EmbeddedRedis, prefix: str, keys: dict[str, str]) -> None:
    """The seam for metering: the handler of an OpenAI-endpoint call receives the caller's tenant."""
    seen: list[str] = []

    async def ensemble(name: str, request: ChatRequest, caller: Caller) -> ChatResponse:
        seen.append(caller.tenant)
        message = AssistantMessage(content=f"{name} for {caller.tenant}")
        return ChatResponse(model=name, choices=[ChatChoice(index=0, message=message)], usage=CompletionUsage())

    app = FastAPI()
    services: list[RunService] = []

    def service() -> RunService:  # made in the server's own event loop, on first use
        if not services:
            store = RedisRunStore(Redis.from_url(redis_server.url, decode_responses=True), prefix)
            services.append(RunService(store, sim_settings(prefix, auth=True)))
        return services[0]

    install_authenticator(app, Authenticator(service))
    router = LocalRouter({"sim": SimEngine({"mode": "echo"}, name="sim")})
    calls = EndpointCalls(InMemoryRunStore(), router, Pricing())
    app.include_router(
        build_openai_router(lambda: router, get_calls=lambda: calls, default_model="sim", ensemble_chat=ensemble)
    )
    with serve_http(app) as base:

        def use() -> str:
            r = _client(base, keys["a"]).chat.completions.create(model="ensemble/x", messages=HELLO)
            return r.choices[0].message.content or ""

        assert await asyncio.to_thread(use) == "x for tenant-a"
    assert seen == ["tenant-a"]


class CountingRouter(LocalRouter):
    """The local router, counting the requests and completion tokens that reach the engines."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.requests = 0
        self.tokens = 0

    async def chat(self, model: str, request: ChatRequest) -> ChatResponse:
        self.requests += 1
        response = await super().chat(model, request)
        self.tokens += response.usage.completion_tokens
        return response


def test_an_ensemble_over_the_ceiling_is_refused_naming_the_numbers(prefix: str) -> None:
    settings = sim_settings(prefix, ensemble_ceiling={"model_calls": 3, "output_tokens": 1000})
    router = CountingRouter({"sim": SimEngine({"mode": "echo"}, name="sim")})
    store = InMemoryRunStore()
    chat = make_ensemble_chat(settings, lambda: router, lambda: store)
    app = FastAPI()
    install_authenticator(app, Authenticator.disabled())
    calls = EndpointCalls(store, router, Pricing())
    app.include_router(
        build_openai_router(lambda: router, get_calls=lambda: calls, default_model="sim", ensemble_chat=chat)
    )
    with serve_http(app) as base:
        r = httpx.post(
            f"{base}/v1/chat/completions",
            json={"model": "ensemble/best-of-n-local", "messages": HELLO, "max_tokens": 50},
        )
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "ensemble_over_ceiling" and err["param"] == "max_tokens"
    # best-of-4 in one request, a ranker re-asked up to twice: 4 calls, 4*50 + 3*50 tokens.
    assert "max_tokens=50 may make up to 4 model calls writing up to 350 output tokens" in err["message"]
    assert "at most 3 calls and 1000 output tokens" in err["message"]
    assert router.requests == 0  # refused before any call


@pytest.mark.parametrize("name", ["best-of-n-local", "moa-lite-local", "self-consistency-local"])
async def test_an_ensemble_that_fits_is_held_to_its_worst_case(prefix: str, name: str) -> None:
    """The judges here never parse (the sim echoes its prompt), so every re-ask happens: the most an
    ensemble can spend. The engines see no more requests or tokens than the worst case allowed,
    and the ensemble still completes (the ceiling counted the re-asks)."""
    settings = sim_settings(prefix)
    router = CountingRouter({"sim": SimEngine({"mode": "echo"}, name="sim")})
    store = InMemoryRunStore()
    chat = make_ensemble_chat(settings, lambda: router, lambda: store)
    request = ChatRequest(model=f"ensemble/{name}", messages=HELLO, max_tokens=12)
    response = await chat(name, request, Caller(tenant="tenant-a"))
    worst = worst_case(load_named(name), 12, 2)
    assert 0 < router.requests <= worst.model_calls and router.tokens <= worst.output_tokens
    assert response.choices[0].finish_reason == "stop", response
    assert response.usage.completion_tokens == router.tokens


async def test_unknown_ensembles_and_bad_requests_are_4xx(redis_server: EmbeddedRedis, prefix: str) -> None:
    settings = sim_settings(prefix)
    with serve_http(build_fastapi(settings, redis_server.url, router_mode="local")) as base:
        async with httpx.AsyncClient(base_url=base) as c:
            nope = await c.post("/v1/chat/completions", json={"model": "ensemble/nope", "messages": HELLO})
            tools = await c.post(
                "/v1/chat/completions",
                json={
                    "model": "ensemble/best-of-n-local",
                    "messages": HELLO,
                    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
                },
            )
    assert nope.status_code == 404 and nope.json()["error"]["code"] == "model_not_found"
    assert "known ensembles" in nope.json()["error"]["message"]
    assert tools.status_code == 400 and "do not call tools" in tools.json()["error"]["message"]
