"""The OpenAI router as an app for the cluster tests, and ``Flaky``, an OpenAI-compatible server that
fails on purpose; ``serve_http`` serves either on 127.0.0.1."""

from __future__ import annotations

import json

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from conclave.api.auth import Authenticator, install_authenticator
from conclave.api.openai_compat import EnsembleChat, build_openai_router
from conclave.budgets.pricing import Pricing
from conclave.controller.calls import EndpointCalls
from conclave.core.memory import InMemoryRunStore
from conclave.core.router import ModelRouter
from tests._http import serve_http


def openai_app(
    router: ModelRouter, default_model: str | None = None, ensemble_chat: EnsembleChat | None = None
) -> FastAPI:
    app = FastAPI()
    install_authenticator(app, Authenticator.disabled())
    calls = EndpointCalls(InMemoryRunStore(), router, Pricing())  # metered, to a ledger in memory
    app.include_router(
        build_openai_router(
            lambda: router, get_calls=lambda: calls, default_model=default_model, ensemble_chat=ensemble_chat
        )
    )
    return app


__all__ = ["Flaky", "openai_app", "serve_http"]


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
