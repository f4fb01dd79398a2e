"""Chaos: malformed requests of many shapes to every endpoint — no 5xx, the service stays healthy,
and runs in flight are not affected."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from redis.asyncio import Redis

from conclave.api.app import create_app
from conclave.api.ingress import build_fastapi
from conclave.controller.redis_server import EmbeddedRedis
from tests.integration._helpers import running_worker, serve_http, sim_settings
from tests.integration._keys import new_key

pytestmark = [pytest.mark.slow, pytest.mark.redis]


async def test_schemathesis_finds_no_server_error(redis_server: EmbeddedRedis, redis: Redis, prefix: str) -> None:
    """Every operation of /openapi.json — the run API and the OpenAI endpoint — fuzzed from its
    schema (bounded examples per operation) with auth on, a valid key supplied and a worker
    running: no 5xx."""
    from hypothesis import given

    settings_ = sim_settings(prefix, auth=True)
    key = (await new_key(redis_server.url, prefix, "fuzzer")).key
    auth = {"Authorization": f"Bearer {key}", "x-api-key": key}
    with serve_http(build_fastapi(settings_, redis_server.url, router_mode="local")) as base:
        async with running_worker(settings_, redis_server.url):
            async with httpx.AsyncClient(base_url=base, headers=auth) as c:  # a real run to look at
                real = (await c.post("/v1/runs", json={"kind": "chat", "input": "fuzz me"})).json()["id"]

            def fuzz() -> list[str]:
                schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
                tried: list[str] = []
                seen: dict[str, set[int]] = {}
                for result in schema.get_all_operations():
                    op = result.ok()
                    tried.append(f"{op.method.upper()} {op.path}")

                    @given(case=op.as_strategy())
                    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
                    def check(case: schemathesis.Case) -> None:
                        if case.path.endswith("/events"):
                            case.query = {**(case.query or {}), "follow": "false"}
                        if case.path_parameters and "run_id" in case.path_parameters and random.random() < 0.3:
                            case.path_parameters = {**case.path_parameters, "run_id": real}
                        response = case.call(timeout=20, headers=auth)
                        seen.setdefault(f"{case.method} {case.path}", set()).add(response.status_code)
                        assert response.status_code < 500, (
                            case.method,
                            case.formatted_path,
                            response.status_code,
                            response.text[:300],
                        )

                    check()
                # The key was accepted: every operation reached its handler, not just the 401.
                assert all(codes != {401} for codes in seen.values()), seen
                return tried

            tried = await asyncio.to_thread(fuzz)
    assert "POST /v1/runs" in tried and "POST /v1/chat/completions" in tried and "GET /v1/models" in tried, tried
    assert len(tried) >= 12, tried


def _bodies(rng: random.Random) -> Iterator[tuple[str, str, bytes, dict[str, str]]]:
    """(method, path, body, headers) of many malformed shapes."""
    deep = b"[" * 20000 + b"]" * 20000
    deep_obj = ('{"input": ' + '{"a": ' * 5000 + "1" + "}" * 5000 + "}").encode()
    shapes: list[bytes] = [
        b"",
        b"{",
        b"null",
        b"[]",
        b'"just a string"',
        b"\xff\xfe\xfa not utf-8",
        b'{"kind": "chat", "input": "\xff\xfe"}',
        deep,
        deep_obj,
        json.dumps({"kind": "chat", "input": "x" * 1_100_000}).encode(),
        json.dumps({"kind": 5, "input": ["not", "messages"]}).encode(),
        json.dumps({"kind": "chat", "input": "x", "budget": {"usd": "NaN"}}).encode(),
        json.dumps({"kind": "chat", "input": "x", "budget": {"usd": 1e309}}).encode(),
        json.dumps({"kind": "chat", "input": "x", "max_steps": -1}).encode(),
        json.dumps({"kind": "chat", "input": "x", "metadata": {str(i): "v" for i in range(100)}}).encode(),
        json.dumps({"kind": "chat", "input": [{"role": "wizard", "content": "x"}]}).encode(),
        json.dumps({"kind": "chat", "input": "x", "tools": "fs"}).encode(),
        json.dumps({"kind": "chat", "input": "x", "options": {"temperature": 99}}).encode(),
        b"x" * (9 * 1024 * 1024),
    ]
    paths = [
        ("POST", "/v1/runs"),
        ("GET", "/v1/runs"),
        ("GET", "/v1/runs/%00"),
        ("GET", "/v1/runs/" + "a" * 5000),
        ("POST", "/v1/runs/x/cancel"),
        ("GET", "/v1/runs/x/events"),
        ("GET", "/v1/runs?limit=-3&status=bogus&cursor=zz"),
        ("GET", "/v1/runs?limit=99999999999999999999"),
        ("PUT", "/v1/runs"),
    ]
    headers = [
        {"content-type": "application/json"},
        {"content-type": "text/plain"},
        {"content-type": "application/json", "Idempotency-Key": "k" * 1000},
        {"content-type": "application/json", "Last-Event-ID": "not-a-number"},
        {"content-type": "application/json; charset=latin-1"},
    ]
    for i in range(1000):
        method, path = paths[i % len(paths)] if i % 3 else ("POST", "/v1/runs")
        yield method, path, shapes[rng.randrange(len(shapes))], headers[rng.randrange(len(headers))]


async def test_a_thousand_malformed_requests_get_4xx_and_harm_no_run(redis_server: EmbeddedRedis, prefix: str) -> None:
    s = sim_settings(prefix)
    rng = random.Random(11)
    with serve_http(create_app(s, redis_server.url)) as base:
        async with httpx.AsyncClient(base_url=base, timeout=60) as c, running_worker(s, redis_server.url):
            good = (
                await c.post("/v1/runs", json={"kind": "steps", "input": "x", "options": {"n": 6, "sleep": 0.3}})
            ).json()["id"]
            statuses: dict[int, int] = {}
            for method, path, body, headers in _bodies(rng):
                r = await c.request(method, path, content=body if method in ("POST", "PUT") else None, headers=headers)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                assert r.status_code < 500, (method, path, body[:80], r.status_code, r.text[:200])
                if r.status_code >= 400:
                    assert "error" in r.json(), r.text[:200]
            assert (await c.get("/healthz")).status_code == 200
            for _ in range(200):
                run = (await c.get(f"/v1/runs/{good}")).json()
                if run["status"] not in ("queued", "running"):
                    break
                await asyncio.sleep(0.1)
    assert run["status"] == "succeeded" and run["output"] == "sum=55"
    assert sum(statuses.values()) == 1000 and not any(code >= 500 for code in statuses)
