"""The route-by-route sweep: every path and method in ``/openapi.json`` — whatever routes exist when it
runs, so routes added later are swept too — called with no key, a wrong key, a revoked key and
another tenant's key, against a real run of tenant A. Unauthorised 2xx: none. The first three get
401; tenant B gets 404 for A's resources, 403 on the admin routes and ``/metrics``, and never sees A's
data anywhere. Routes left out of the document must be on the short public allow-list.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from redis.asyncio import Redis
from starlette.routing import Mount, Route

from conclave.api.ingress import build_fastapi
from conclave.controller.redis_server import EmbeddedRedis
from conclave.controller.redis_store import RedisRunStore

from ._helpers import running_worker, serve_http, sim_settings, wait_terminal
from ._keys import new_key

#: Routes anyone may call. Everything else needs a key. Keep this list short and explicit.
PUBLIC = {"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
PUBLIC_PREFIXES = ("/ui",)  # the console's static files, once it is mounted
#: Routes for admin keys only: a tenant's key gets 403 there.
ADMIN = "/v1/admin/"
#: The documented exceptions outside ``ADMIN`` that a tenant's key also gets 403 on: ``/metrics`` (its
#: labels name every tenant) takes the metrics token or an admin key, never a tenant's key.
TENANT_FORBIDDEN = {"/metrics"}

#: Valid bodies for the operations that take one, so an authorised call would really do something;
#: an operation added later without an entry here is swept with an empty JSON object.
BODIES: dict[tuple[str, str], Any] = {
    ("post", "/v1/runs"): {"kind": "chat", "input": "sweep"},
    ("post", "/v1/chat/completions"): {"model": "sim", "messages": [{"role": "user", "content": "hi"}]},
    ("post", "/v1/runs/{run_id}/approvals"): {"approval_id": "apr_sweep", "decision": "approve"},
    ("post", "/v1/runs/{run_id}/fork"): {"step_key": "s/0"},
    ("post", "/v1/threads"): {"id": "sweep"},
    ("post", "/v1/threads/{thread_id}/runs"): {"input": "sweep"},
    ("post", "/v1/schedules"): {"cron": "0 9 * * *", "task": {"kind": "chat", "input": "sweep"}},
}


def _public(path: str) -> bool:
    return path in PUBLIC or path.startswith(PUBLIC_PREFIXES)


def _fill(path: str, run_id: str, file: str) -> str:
    """Path parameters: A's run for ``run_id``, a file of its workspace for ``path``, else a plain
    value (for routes added later, the id-like ones get A's run id too)."""

    def one(m: re.Match[str]) -> str:
        name = m.group(1).split(":")[0]
        if name == "path":
            return file
        if name == "model_id":
            return "sim"
        return run_id if name.endswith("id") else "x"

    return re.sub(r"\{([^}]+)\}", one, path)


def _names_a_resource_of_a(template: str) -> bool:
    """Whether the path points at something of tenant A (a run, or anything else with an id)."""
    return any(n.split(":")[0].endswith("id") and n != "model_id" for n in re.findall(r"\{([^}]+)\}", template))


async def test_no_route_answers_2xx_without_the_right_key(
    redis_server: EmbeddedRedis, redis: Redis, prefix: str
) -> None:
    settings = sim_settings(prefix, auth=True)
    a, b = await new_key(redis_server.url, prefix, "tenant-a"), await new_key(redis_server.url, prefix, "tenant-b")
    old = await new_key(redis_server.url, prefix, "tenant-a", name="old", revoked=True)
    app = build_fastapi(settings, redis_server.url, router_mode="local")
    callers: dict[str, dict[str, str]] = {
        "no key": {},
        "a wrong key": {"Authorization": "Bearer cvk_not_a_key"},
        "a revoked key": {"x-api-key": old.key},
    }
    with serve_http(app) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as c, running_worker(settings, redis_server.url):
            mine = {"Authorization": f"Bearer {a.key}"}
            run = await c.post("/v1/runs", json={"kind": "steps", "input": "x", "options": {"n": 2}}, headers=mine)
            assert run.status_code == 201, run.text
            rid = run.json()["id"]
            await wait_terminal(RedisRunStore(redis, prefix), rid)
            listing = (await c.get(f"/v1/runs/{rid}/workspace", headers=mine)).json()["files"]
            file = listing[0]["path"] if listing else "notes.md"
            doc = (await c.get("/openapi.json")).json()

            swept: list[str] = []
            problems: list[str] = []
            for template, item in doc["paths"].items():
                for method in item:
                    if method not in ("get", "post", "put", "patch", "delete"):
                        continue
                    url = _fill(template, rid, file)
                    body = BODIES.get((method, template), {} if method != "get" else None)
                    params = {"follow": "false"} if template.endswith("/events") else None

                    async def call(
                        headers: dict[str, str],
                        url: str = url,
                        method: str = method,
                        body: Any = body,
                        params: Any = params,
                    ) -> httpx.Response:
                        return await c.request(method.upper(), url, json=body, headers=headers, params=params)

                    swept.append(f"{method.upper()} {template}")
                    if _public(template):
                        continue
                    for who, headers in callers.items():
                        r = await call(headers)
                        if r.status_code != 401:
                            problems.append(f"{method.upper()} {url} with {who}: {r.status_code} {r.text[:120]}")
                    r = await call({"x-api-key": b.key})
                    no_tenant = template.startswith(ADMIN) or template in TENANT_FORBIDDEN  # B's key is no admin key
                    if no_tenant and r.status_code != 403:
                        problems.append(f"{method.upper()} {url} with tenant B's key: {r.status_code}, not 403")
                    elif not template.startswith(ADMIN) and _names_a_resource_of_a(template) and r.status_code != 404:
                        problems.append(f"{method.upper()} {url} with tenant B's key: {r.status_code}, not 404")
                    if r.is_success and (rid in r.text or "tenant-a" in r.text):
                        problems.append(f"{method.upper()} {url} with tenant B's key shows tenant A's data")
                    owner = await call(mine)  # the sweep reaches real handlers: A's own key gets through
                    if owner.status_code == 401:
                        problems.append(f"{method.upper()} {url} refused tenant A's own key")
    assert problems == [], "\n".join(problems)
    assert {"GET /v1/runs/{run_id}", "POST /v1/chat/completions", "GET /v1/models"} <= set(swept), swept
    assert len(swept) >= 12, swept


def _leaves(routes: list[Any], prefix: str = "", in_schema: bool = True) -> Iterator[tuple[str, bool]]:
    """(path, documented?) of every route the app serves, through included routers (FastAPI keeps
    an included router as one entry that holds the original router and its prefix)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            ctx = route.include_context
            yield from _leaves(inner.routes, prefix + ctx.prefix, in_schema and ctx.include_in_schema)
        elif isinstance(route, APIRoute):
            yield prefix + re.sub(r":[a-z]+\}", "}", route.path), in_schema and route.include_in_schema
        elif isinstance(route, Route | Mount):
            yield prefix + route.path, False
        else:
            yield f"{prefix}<{type(route).__name__}>", False


def test_every_route_outside_the_document_is_on_the_public_allow_list() -> None:
    """A route hidden from /openapi.json (``include_in_schema=False``, a mount) escapes the sweep;
    only the allow-listed ones may exist."""
    app = build_fastapi(sim_settings("sweep", auth=True), "redis://127.0.0.1:1", router_mode="local")
    documented = set(app.openapi()["paths"])
    leaves = list(_leaves(app.routes))
    assert {p for p, doc in leaves if doc} == documented  # the walk sees what the document lists
    hidden = [p for p, doc in leaves if not doc and not _public(p)]
    assert hidden == [], f"routes outside the document and not public: {hidden}"


@pytest.mark.parametrize("path", ["/healthz", "/openapi.json", "/docs"])
async def test_the_public_routes_answer_without_a_key(redis_server: EmbeddedRedis, prefix: str, path: str) -> None:
    app = build_fastapi(sim_settings(prefix, auth=True), redis_server.url, router_mode="local")
    with serve_http(app) as base:
        async with httpx.AsyncClient(base_url=base) as c:
            assert (await c.get(path)).status_code == 200
