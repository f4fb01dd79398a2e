"""The runs API over real HTTP on 127.0.0.1 (uvicorn), real Valkey, an in-process worker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from conclave.api.app import create_app
from conclave.config import Settings
from conclave.controller.redis_server import EmbeddedRedis, free_port

from ._helpers import running_worker, serve_http, sim_settings

pytestmark = pytest.mark.redis


@pytest.fixture
def settings(prefix: str) -> Settings:
    return sim_settings(prefix)


@pytest.fixture
async def api(settings: Settings, redis_server: EmbeddedRedis) -> AsyncIterator[httpx.AsyncClient]:
    with serve_http(create_app(settings, redis_server.url)) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as c:
            yield c


async def _wait(api: httpx.AsyncClient, rid: str) -> dict:
    for _ in range(600):
        run = (await api.get(f"/v1/runs/{rid}")).json()
        if run["status"] not in ("queued", "running"):
            return run
        await asyncio.sleep(0.05)
    raise AssertionError(run)


async def test_openapi_lists_the_run_endpoints(api: httpx.AsyncClient) -> None:
    paths = (await api.get("/openapi.json")).json()["paths"]
    for p in ("/v1/runs", "/v1/runs/{run_id}", "/v1/runs/{run_id}/cancel", "/v1/runs/{run_id}/events"):
        assert p in paths


async def test_submit_wait_and_read_a_run(
    api: httpx.AsyncClient, settings: Settings, redis_server: EmbeddedRedis
) -> None:
    r = await api.post("/v1/runs", json={"kind": "chat", "input": "Say hello"})
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    async with running_worker(settings, redis_server.url):
        run = await _wait(api, rid)
    assert run["status"] == "succeeded" and "Say hello" in run["output"]
    page = (await api.get("/v1/runs", params={"status": "succeeded"})).json()
    assert rid in [x["id"] for x in page["runs"]]
    cost = (await api.get(f"/v1/runs/{rid}/cost")).json()
    assert cost["by_model"]["sim"]["usage"]["model_calls"] == 1


async def test_idempotency_key_header_returns_the_same_run_and_conflicts_on_a_different_task(
    api: httpx.AsyncClient,
) -> None:
    h = {"Idempotency-Key": "abc-123"}
    a = await api.post("/v1/runs", json={"kind": "chat", "input": "one"}, headers=h)
    b = await api.post("/v1/runs", json={"kind": "chat", "input": "one"}, headers=h)
    c = await api.post("/v1/runs", json={"kind": "chat", "input": "two"}, headers=h)
    assert (a.status_code, b.status_code, c.status_code) == (201, 200, 409)
    assert a.json()["id"] == b.json()["id"]
    assert c.json()["error"]["code"] == "idempotency_conflict"


@pytest.mark.parametrize(
    ("body", "field", "needle"),
    [
        ({"kind": "chat", "input": "x", "bogus": 1}, "bogus", "unknown field"),
        ({"kind": "chat"}, "input", "Field required"),
        ({"kind": "nope", "input": "x"}, "kind", "unknown run kind 'nope'"),
        ({"kind": "chat", "input": "x", "budget": {"usd": -1}}, "budget.usd", ""),
        ({"kind": "chat", "input": "x", "model": "gpt-99"}, "model", "unknown model 'gpt-99'"),
        ({"kind": "chat", "input": "x", "options": {"max_tokens": "lots"}}, "options.max_tokens", ""),
    ],
)
async def test_bad_task_specs_get_a_422_naming_the_field(
    api: httpx.AsyncClient, body: dict, field: str, needle: str
) -> None:
    r = await api.post("/v1/runs", json=body)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] in ("invalid_request", "invalid_task")
    assert any(d["field"] == field for d in err["details"]), err
    assert needle in err["message"]
    assert "Traceback" not in r.text


async def test_malformed_json_body_is_a_clear_422(api: httpx.AsyncClient) -> None:
    r = await api.post("/v1/runs", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


async def test_unknown_run_is_404_json(api: httpx.AsyncClient) -> None:
    for r in (await api.get("/v1/runs/run_nope"), await api.post("/v1/runs/run_nope/cancel")):
        assert r.status_code == 404 and r.json()["error"]["code"] == "run_not_found"


async def test_sse_resumes_exactly_after_last_event_id(
    api: httpx.AsyncClient, settings: Settings, redis_server: EmbeddedRedis
) -> None:
    rid = (await api.post("/v1/runs", json={"kind": "steps", "input": "x", "options": {"n": 5}})).json()["id"]

    async def read(headers: dict[str, str], stop_after: int | None = None) -> list[dict]:
        out: list[dict] = []
        async with api.stream("GET", f"/v1/runs/{rid}/events", headers=headers) as resp:
            assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
            async for line in resp.aiter_lines():
                if line.startswith("data: "):
                    out.append(json.loads(line[6:]))
                    if stop_after is not None and len(out) >= stop_after:
                        break
        return out

    async with running_worker(settings, redis_server.url):
        first = await read({}, stop_after=3)  # then the connection drops
        rest = await read({"Last-Event-ID": str(first[-1]["id"])})
    ids = [e["id"] for e in first + rest]
    assert ids == list(range(1, len(ids) + 1))
    assert rest[-1]["type"] == "run.finished"


async def test_redis_unreachable_is_a_503_with_a_message(settings: Settings) -> None:
    app = create_app(settings, f"redis://127.0.0.1:{free_port()}/0")
    with serve_http(app) as base:
        async with httpx.AsyncClient(base_url=base, timeout=60) as c:
            r = await c.post("/v1/runs", json={"kind": "chat", "input": "x"})
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "store_unavailable" and "unreachable" in r.json()["error"]["message"]


async def test_workspace_listing_file_and_tarball(
    api: httpx.AsyncClient, settings: Settings, redis_server: EmbeddedRedis, tmp_path
) -> None:
    import asyncio as _asyncio

    from conclave import Client

    rid = (await api.post("/v1/runs", json={"kind": "steps", "input": "x", "options": {"n": 3}})).json()["id"]
    async with running_worker(settings, redis_server.url):
        await _wait(api, rid)
    listing = (await api.get(f"/v1/runs/{rid}/workspace")).json()
    assert [f["path"] for f in listing["files"]] == ["steps/0.txt", "steps/1.txt", "steps/2.txt"]
    assert listing["files"][0]["lines"] == 1 and listing["total_bytes"] == 18
    f = await api.get(f"/v1/runs/{rid}/workspace/steps/1.txt")
    assert f.status_code == 200 and f.text == "step 1" and f.headers["content-type"].startswith("text/plain")
    assert (await api.get(f"/v1/runs/{rid}/workspace/steps/9.txt")).json()["error"]["code"] == "file_not_found"
    esc = await api.get(f"/v1/runs/{rid}/workspace/..%2F..%2Fetc%2Fpasswd")
    assert esc.status_code in (404, 422) and "error" in esc.json()
    base = str(api.base_url).rstrip("/")
    files = await _asyncio.to_thread(lambda: Client(base).workspace.download(rid, tmp_path / "ws"))
    assert sorted(p.relative_to(tmp_path / "ws").as_posix() for p in files) == [
        "steps/0.txt",
        "steps/1.txt",
        "steps/2.txt",
    ]
    assert (tmp_path / "ws" / "steps" / "2.txt").read_text() == "step 2"
