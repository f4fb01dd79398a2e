"""A real uvicorn server on 127.0.0.1 (a free port, a background thread) for tests over HTTP."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn

from conclave.controller.redis_server import free_port


@contextlib.contextmanager
def serve_http(app: Any, port: int | None = None) -> Iterator[str]:
    """Serve ``app`` until the block ends (its lifespan included); yields its base URL. A given
    ``port`` lets a test bring a server back on the same address."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
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
