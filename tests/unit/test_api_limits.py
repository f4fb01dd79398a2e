"""``BodyLimit``: every body is bounded — declared, chunked, under the run API or the OpenAI paths —
against a real uvicorn on 127.0.0.1 and a raw socket client that keeps streaming until the server
answers."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI, Request

from conclave.api.limits import BodyLimit
from tests._http import serve_http
from tests._upload import upload

LIMIT = 1024 * 1024


def _app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(BodyLimit, max_bytes=LIMIT, drain_bytes=4 * LIMIT)
    seen: list[int] = []
    app.state.seen = seen

    @app.post("/v1/runs")
    async def runs(request: Request) -> dict[str, int]:
        n = len(await request.body())
        seen.append(n)
        return {"bytes": n}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict[str, int]:
        n = len(await request.body())
        seen.append(n)
        return {"bytes": n}

    return app


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, list[int]]]:
    app = _app()
    with serve_http(app) as base:
        yield base, app.state.seen


def test_a_chunked_body_over_the_limit_is_refused_with_413_before_the_app_sees_it(
    server: tuple[str, list[int]],
) -> None:
    base, seen = server
    before = len(seen)
    r = upload(base, "/v1/runs", 20 * 1024 * 1024)
    assert r.status == 413, r.body[:200]
    assert r.json()["error"]["code"] == "body_too_large" and str(LIMIT) in r.json()["error"]["message"]
    assert r.headers["connection"] == "close"
    assert r.sent < 20 * 1024 * 1024  # the server stopped reading: the rest of the upload never went out
    assert len(seen) == before  # the handler never got a body


def test_a_declared_length_over_the_limit_is_refused_before_any_byte_is_read(server: tuple[str, list[int]]) -> None:
    base, _ = server
    r = upload(base, "/v1/runs", 0, declared=20 * 1024 * 1024)
    assert r.status == 413 and "20971520 bytes" in r.json()["error"]["message"]
    assert r.headers["connection"] == "close"  # more than drain_bytes: not worth reading on


def test_a_client_that_writes_its_whole_body_first_still_reads_the_413(server: tuple[str, list[int]]) -> None:
    """Within ``drain_bytes`` the connection survives the refusal, so httpx (which sends the whole
    declared body before it reads) gets the answer instead of a reset connection."""
    base, seen = server
    before = len(seen)
    r = httpx.post(f"{base}/v1/runs", content=b"y" * (3 * LIMIT), timeout=30)
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
    assert len(seen) == before


def test_the_openai_paths_get_openais_error_shape(server: tuple[str, list[int]]) -> None:
    base, _ = server
    r = upload(base, "/v1/chat/completions", 5 * LIMIT)
    assert r.status == 413
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["code"] == "body_too_large" and "param" in err


@pytest.mark.parametrize("declared", [False, True])
def test_bodies_within_the_limit_reach_the_app_whole(server: tuple[str, list[int]], declared: bool) -> None:
    base, _ = server
    r = upload(base, "/v1/runs", LIMIT, declared=LIMIT if declared else None)
    assert r.status == 200 and r.json() == {"bytes": LIMIT}


def test_a_negative_limit_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="max_bytes must be >= 0"):
        BodyLimit(FastAPI(), max_bytes=-1)
