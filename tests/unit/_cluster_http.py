"""A real uvicorn server on 127.0.0.1 (a free port, a background thread) for the cluster tests."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from conclave.api.openai_compat import EnsembleChat, build_openai_router
from conclave.cluster.router import ModelRouter
from conclave.controller.redis_server import free_port


@contextlib.contextmanager
def serve_http(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` until the block ends; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        threading.Event().wait(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def openai_app(
    router: ModelRouter, default_model: str | None = None, ensemble_chat: EnsembleChat | None = None
) -> FastAPI:
    app = FastAPI()
    app.include_router(build_openai_router(lambda: router, default_model=default_model, ensemble_chat=ensemble_chat))
    return app
