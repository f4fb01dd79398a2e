"""The OpenAI router as an app for the cluster tests; ``serve_http`` serves it on 127.0.0.1."""

from __future__ import annotations

from fastapi import FastAPI

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


__all__ = ["openai_app", "serve_http"]
