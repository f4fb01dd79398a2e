"""The OpenAI-compatible endpoint: ``GET /v1/models`` and ``POST /v1/chat/completions``.

Thin HTTP wiring over a ``ModelRouter``: the request is validated with the same pydantic models the
engines speak, routed by model name, and answered in OpenAI's shapes — JSON, or server-sent events
(``data: {chunk}`` … ``data: [DONE]``) when ``stream`` is set. Errors use OpenAI's error body
(``{"error": {"message", "type", "param", "code"}}``) so OpenAI clients raise their usual typed
exceptions; a validation error names the offending field in ``param`` and in the message.

The body is parsed here rather than by FastAPI so the error shape does not depend on the app's
exception handlers: this router can be mounted in any FastAPI app (the API ingress, a test app).

A model named ``ensemble/<name>`` goes to ``ensemble_chat`` when the app provides one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError

from conclave.core.router import ModelRouter
from conclave.schema.chat import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    CompletionUsage,
    EngineError,
    ModelNotFound,
    chunks_of,
)

__all__ = ["ENSEMBLE_PREFIX", "build_openai_router", "openai_error"]

logger = logging.getLogger(__name__)

ENSEMBLE_PREFIX = "ensemble/"

EnsembleChat = Callable[[str, ChatRequest], Awaitable[ChatResponse]]

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "conflict_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
}


def openai_error(status: int, message: str, *, param: str | None = None, code: str | None = None) -> JSONResponse:
    """An error in the shape OpenAI's API (and so its clients) use."""
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return JSONResponse(
        status_code=status,
        content={"error": {"message": message, "type": kind, "param": param, "code": code}},
    )


def _param_path(loc: tuple[int | str, ...]) -> str | None:
    """``("messages", 0, "role")`` → ``messages[0].role`` (OpenAI's spelling of a field path)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or None


def _validation_error(err: ValidationError) -> JSONResponse:
    problems = []
    first_param: str | None = None
    for e in err.errors(include_url=False):
        # Union members add their type name to the path (e.g. "str", "list[TextPart]"); drop them.
        loc = tuple(p for p in e["loc"] if isinstance(p, int) or not any(c in str(p) for c in "[]-"))
        path = _param_path(loc)
        first_param = first_param or path
        got = e.get("input")
        got_s = "" if isinstance(got, dict | list) or got is None else f" (got {got!r})"
        msg = e["msg"].removeprefix("Value error, ")
        problems.append(f"{path}: {msg}{got_s}" if path else f"{msg}{got_s}")
    return openai_error(400, "Invalid request: " + "; ".join(dict.fromkeys(problems)), param=first_param)


def _engine_error(err: BaseException) -> JSONResponse:
    if isinstance(err, ModelNotFound):
        return openai_error(404, str(err), param="model", code="model_not_found")
    if isinstance(err, EngineError):
        code = "model_unavailable" if err.status == 503 else None
        return openai_error(err.status, str(err), code=code)
    logger.exception("chat completion failed", exc_info=err)
    return openai_error(500, f"internal error: {type(err).__name__}: {err}", code="internal_error")


def _error_body(err: BaseException) -> dict[str, Any]:
    response = _engine_error(err)
    body: dict[str, Any] = json.loads(bytes(response.body))
    return body


def _sse(data: dict[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


async def _sse_stream(
    first: ChatChunk | None, rest: AsyncIterator[ChatChunk], *, model: str, include_usage: bool
) -> AsyncIterator[bytes]:
    """Chunks as SSE. Usage is taken from whichever chunk carries it and sent once, last, in a
    chunk with no choices, as OpenAI does — and only when the client asked for it. Leaving this
    generator (client gone) closes ``rest``, which aborts the generation on the replica."""
    usage: CompletionUsage | None = None
    last_id, created = "", int(time.time())
    try:
        chunk = first
        while chunk is not None:
            last_id, created = chunk.id, chunk.created
            if chunk.usage is not None:
                usage = chunk.usage
            if chunk.choices:
                out = chunk.model_dump(mode="json", exclude_none=True)
                out["model"] = model
                if include_usage:
                    out["usage"] = None
                else:
                    out.pop("usage", None)
                yield _sse(out)
            try:
                chunk = await anext(rest)
            except StopAsyncIteration:
                chunk = None
        if include_usage:
            final = ChatChunk(id=last_id, created=created, model=model, choices=[], usage=usage or CompletionUsage())
            yield _sse(final.model_dump(mode="json"))
        yield _sse("[DONE]")
    except Exception as e:  # the status line is sent already: report in-band, as OpenAI does
        yield _sse(_error_body(e))
    finally:
        aclose = getattr(rest, "aclose", None)
        if aclose is not None:
            await aclose()


async def _once(response: ChatResponse) -> AsyncIterator[ChatChunk]:
    for chunk in chunks_of(response):
        yield chunk


_CHAT_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": ChatRequest.model_json_schema(by_alias=True)}},
    }
}


def build_openai_router(
    get_router: Callable[[], ModelRouter],
    *,
    default_model: str | None,
    ensemble_chat: EnsembleChat | None = None,
) -> APIRouter:
    """The ``/v1`` routes over the router ``get_router()`` returns (called per request, so the
    router can be built lazily or swapped). ``default_model`` answers requests that name none."""
    api = APIRouter(tags=["openai"])

    def _model_card(name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": 0, "owned_by": "conclave"}

    @api.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(m) for m in get_router().models()]}

    @api.get("/v1/models/{model_id:path}", response_model=None)
    async def get_model(model_id: str) -> dict[str, Any] | JSONResponse:
        router = get_router()
        if model_id not in router.models():
            return _engine_error(ModelNotFound(model_id, router.models()))
        return _model_card(model_id)

    @api.post("/v1/chat/completions", openapi_extra=_CHAT_BODY, response_model=None)
    async def chat_completions(http: Request) -> Response:
        try:
            body = await http.json()
        except ValueError as e:
            return openai_error(400, f"the request body is not valid JSON: {e}")
        if not isinstance(body, dict):
            return openai_error(400, f"the request body must be a JSON object, got {type(body).__name__}")
        try:
            request = ChatRequest.model_validate(body)
        except ValidationError as e:
            return _validation_error(e)
        model = request.model or default_model
        if not model:
            return openai_error(400, "model: no model named and no default model configured", param="model")
        request.model = model
        include_usage = bool(request.stream_options and request.stream_options.include_usage)

        try:
            if model.startswith(ENSEMBLE_PREFIX):
                name = model[len(ENSEMBLE_PREFIX) :]
                if ensemble_chat is None:
                    return openai_error(
                        404, f"model {model!r}: ensembles are not served here", param="model", code="model_not_found"
                    )
                ensemble_response = await ensemble_chat(name, request)
                ensemble_response.model = model
                if not request.stream:
                    return JSONResponse(ensemble_response.model_dump(mode="json"))
                chunks: AsyncIterator[ChatChunk] = _once(ensemble_response)
            else:
                router = get_router()
                if not request.stream:
                    response = await router.chat(model, request)
                    response.model = model
                    return JSONResponse(response.model_dump(mode="json"))
                chunks = router.stream(model, request)
            # Pull the first chunk before answering, so an unknown model or a failing replica
            # is a proper HTTP error rather than an error event inside a 200 stream.
            try:
                first: ChatChunk | None = await anext(chunks)
            except StopAsyncIteration:
                first = None
        except Exception as e:
            return _engine_error(e)
        return StreamingResponse(
            _sse_stream(first, chunks, model=model, include_usage=include_usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return api
