"""A size limit that holds for every request body, declared or streamed.

A ``Content-Length`` check alone lets a chunked body (no length header) through, and the framework
then reads it whole before anything looks at it. ``BodyLimit`` is pure ASGI, outside the app: it
refuses a declared length over the limit before reading a byte, and otherwise counts bytes as the
app receives them. The moment the count passes the limit it stops reading — the app's next
``receive`` fails, whatever the app answers is dropped — and it answers 413 itself. Memory per
request is bounded by the limit plus the server's own read buffer, however large the upload.

What happens to the rest of the upload: a body of unknown length (chunked), or a declared one
larger than ``drain_bytes``, gets ``Connection: close`` — the server stops reading and drops the
connection, since reading on could last forever. A declared body up to ``drain_bytes`` is left
for the server to read and discard (uvicorn does, without buffering it), because a client that
writes its whole body before reading (httpx, requests) only sees the 413 if the connection
survives until it has; closing early would reset the connection under it.

The 413 is in the API's error shape, or in OpenAI's under the OpenAI-compatible paths, so each
client sees the shape it parses.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["BodyLimit", "BodyTooLarge", "DEFAULT_DRAIN_BYTES", "DEFAULT_MAX_BODY_BYTES", "OPENAI_PATHS"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: A task spec is at most ~1 MB of input; 8 MiB leaves room for any honest request.
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024

#: Declared bodies up to this size are drained after the 413 rather than cut off (see above).
DEFAULT_DRAIN_BYTES = 64 * 1024 * 1024

#: Path prefixes answered in OpenAI's error shape.
OPENAI_PATHS = ("/v1/chat/", "/v1/models")


class BodyTooLarge(Exception):
    """Raised into the app from ``receive`` once the body has passed the limit."""


class BodyLimit:
    """ASGI middleware: at most ``max_bytes`` of body per HTTP request, else 413."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int = DEFAULT_MAX_BODY_BYTES,
        drain_bytes: int = DEFAULT_DRAIN_BYTES,
        openai_paths: tuple[str, ...] = OPENAI_PATHS,
    ) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.app = app
        self.max_bytes = max_bytes
        self.drain_bytes = drain_bytes
        self.openai_paths = openai_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and (declared < 0 or declared > self.max_bytes):
            await self._refuse(scope, send, declared)
            return

        received = 0
        tripped = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, tripped
            if tripped:
                raise BodyTooLarge()
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    tripped = True
                    raise BodyTooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if tripped:
                return  # the app's own answer to a body it never got whole; ours goes out instead
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not tripped:
                raise
        if tripped and not started:
            await self._refuse(scope, send, declared)

    async def _refuse(self, scope: Scope, send: Send, declared: int | None) -> None:
        size = f"{declared} bytes" if declared is not None and declared >= 0 else "more"
        message = f"the request body is larger than the {self.max_bytes}-byte limit (it is {size})"
        path = str(scope.get("path", ""))
        if path.startswith(self.openai_paths):
            body: dict[str, Any] = {
                "error": {"message": message, "type": "invalid_request_error", "param": None, "code": "body_too_large"}
            }
        else:
            body = {"error": {"code": "body_too_large", "message": message, "details": None}}
        raw = json.dumps(body).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
        if declared is None or declared < 0 or declared > self.drain_bytes:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": raw})


def _content_length(scope: Scope) -> int | None:
    """The declared length; -1 for one that is not a number (refused like an oversized one)."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else -1
    return None
