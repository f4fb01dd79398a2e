"""The OpenAI router as an app for the cluster tests; ``serve_http`` serves it on 127.0.0.1."""

from __future__ import annotations

from fastapi import FastAPI

from conclave.api.openai_compat import EnsembleChat, build_openai_router
from conclave.core.router import ModelRouter
from tests._http import serve_http


def openai_app(
    router: ModelRouter, default_model: str | None = None, ensemble_chat: EnsembleChat | None = None
) -> FastAPI:
    app = FastAPI()
    app.include_router(build_openai_router(lambda: router, default_model=default_model, ensemble_chat=ensemble_chat))
    return app


__all__ = ["openai_app", "serve_http"]
