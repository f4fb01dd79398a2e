"""The OpenAI-compatible endpoint: ``GET /v1/models`` and ``POST /v1/chat/completions``.

Thin HTTP wiring over a ``ModelRouter``: the request is validated with the same pydantic models the
engines speak, routed by model name, and answered in OpenAI's shapes — JSON, or server-sent events
(``data: {chunk}`` … ``data: [DONE]``) when ``stream`` is set. Errors use OpenAI's error body
(``{"error": {"message", "type", "param", "code"}}``) so OpenAI clients raise their usual typed
exceptions (``AuthenticationError`` for a missing or bad key, ``BadRequestError`` naming the
offending field in ``param``…).

The routes use ``OpenAIRoute``, which renders validation and authentication errors in that shape
itself, so the error shape does not depend on the app's exception handlers: this router can be
mounted in any FastAPI app (the API ingress, a test app). The chat body is a declared pydantic body,
so ``/openapi.json`` describes it with schemas hoisted into ``components/schemas``.

Every route requires a key when the app's authenticator is on (``conclave.api.auth.CallerDep``), and
the handler knows the caller's tenant: ``ensemble_chat`` receives it, and so will the meter that charges
plain model calls to the tenant's ledger.

A model named ``ensemble/<name>`` goes to ``ensemble_chat`` when the app provides one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError
from redis.exceptions import TimeoutError as RedisTimeoutError

from conclave.api.auth import Caller, CallerDep
from conclave.api.errors import ApiError
from conclave.controller.calls import EndpointCalls
from conclave.core.ledger import BudgetExhausted
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

__all__ = [
    "ENSEMBLE_PREFIX",
    "EnsembleChat",
    "OpenAIError",
    "OpenAIErrorResponse",
    "OpenAIRoute",
    "build_openai_router",
    "openai_error",
]

logger = logging.getLogger(__name__)

ENSEMBLE_PREFIX = "ensemble/"

#: ``(ensemble name, request, tenant) → response``: what ``model="ensemble/<name>"`` runs.
EnsembleChat = Callable[[str, ChatRequest, Caller], Awaitable[ChatResponse]]

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
}


class OpenAIErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorResponse(BaseModel):
    """OpenAI's error body."""

    error: OpenAIErrorBody


class OpenAIError(Exception):
    """An error a handler (or the ensemble adapter) raises to answer in OpenAI's shape."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def openai_error(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
    kind: str | None = None,
) -> JSONResponse:
    """An error in the shape OpenAI's API (and so its clients) use; ``kind`` overrides the error type the
    status implies (OpenAI's ``insufficient_quota`` is a 429 of its own type)."""
    kind = kind or _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return JSONResponse(
        status_code=status,
        content={"error": {"message": message, "type": kind, "param": param, "code": code}},
        headers=dict(headers) if headers else None,
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


def _validation_error(errors: Sequence[Mapping[str, Any]]) -> JSONResponse:
    """Pydantic (or FastAPI body) errors as one 400 naming every offending field."""
    problems = []
    first_param: str | None = None
    for e in errors:
        loc = tuple(e.get("loc", ()))
        if loc[:1] == ("body",):  # FastAPI's prefix for body fields
            loc = loc[1:]
        if e.get("type") == "json_invalid":
            detail = (e.get("ctx") or {}).get("error", "")
            return openai_error(400, f"the request body is not valid JSON: {detail}".rstrip(": "))
        if e.get("type") == "missing" and not loc:
            return openai_error(400, "a JSON request body is required")
        # Union members add their type name to the path (e.g. "str", "list[TextPart]"); drop them.
        loc = tuple(p for p in loc if isinstance(p, int) or not any(c in str(p) for c in "[]-"))
        path = _param_path(loc)
        first_param = first_param or path
        got = e.get("input")
        got_s = "" if isinstance(got, dict | list) or got is None else f" (got {got!r})"
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        problems.append(f"{path}: {msg}{got_s}" if path else f"{msg}{got_s}")
    return openai_error(400, "Invalid request: " + "; ".join(dict.fromkeys(problems)), param=first_param)


class OpenAIRoute(APIRoute):
    """A route that answers its own errors in OpenAI's shape, whatever app it is mounted in:
    a body that does not validate is a 400 naming the field, a refused key a 401
    (``authentication_error``, code ``invalid_api_key``), an ``OpenAIError`` its own status."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as e:
                return _validation_error(list(e.errors()))
            except ValidationError as e:
                return _validation_error(e.errors(include_url=False))
            except OpenAIError as e:
                return openai_error(e.status, e.message, param=e.param, code=e.code)
            except ApiError as e:
                code = "invalid_api_key" if e.status == 401 else e.code
                headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
                return openai_error(e.status, e.message, code=code, headers=headers)

        return handle


def _quota_error(err: BudgetExhausted) -> JSONResponse:
    """A tenant's or key's budget has no room: OpenAI's 429 ``insufficient_quota``, so clients stop
    instead of retrying at once."""
    where = err.scope.replace("@", " (") + ")" if "@" in err.scope else err.scope
    return openai_error(
        429,
        f"insufficient quota: the budget of {where} has no room for this call ({err.label} is used up); "
        "it frees up when the period rolls over or the budget is raised",
        code="insufficient_quota",
        kind="insufficient_quota",
    )


def _store_error(err: BaseException) -> JSONResponse:
    """The run store is unreachable or full: a retryable 503 in OpenAI's shape (nothing was charged)."""
    full = isinstance(err, OutOfMemoryError)
    response = openai_error(
        503,
        "the service's store is full (Redis reached its maxmemory); retry later"
        if full
        else f"the service's store is unreachable ({err}); retry later",
        code="store_full" if full else "store_unavailable",
    )
    response.headers["Retry-After"] = "5"
    return response


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


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "conclave"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard] = Field(default_factory=list)


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": OpenAIErrorResponse, "description": "The request is invalid (``param`` names the field)."},
    401: {"model": OpenAIErrorResponse, "description": "No API key, or an unknown or revoked one."},
    404: {"model": OpenAIErrorResponse, "description": "No such model."},
    413: {"model": OpenAIErrorResponse, "description": "The request body is too large."},
}
_CHAT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A completion, or server-sent chunks (``data: {...}`` … ``data: [DONE]``) with ``stream``.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    503: {"model": OpenAIErrorResponse, "description": "No replica of the model can serve now."},
}


def build_openai_router(
    get_router: Callable[[], ModelRouter],
    *,
    get_calls: Callable[[], EndpointCalls],
    default_model: str | None,
    ensemble_chat: EnsembleChat | None = None,
) -> APIRouter:
    """The ``/v1`` routes over the router ``get_router()`` returns (called per request, so the
    router can be built lazily or swapped). Every call goes through ``get_calls()``, which meters it to
    the caller's tenant. ``default_model`` answers requests that name none. The app must have an
    authenticator installed (``conclave.api.auth.install_authenticator``); without one every request
    is refused."""
    api = APIRouter(tags=["openai"], route_class=OpenAIRoute, responses=_ERRORS)

    @api.get("/v1/models", response_model=ModelList, summary="List the served models")
    async def list_models(caller: CallerDep) -> ModelList:
        return ModelList(data=[ModelCard(id=m) for m in get_router().models()])

    @api.get("/v1/models/{model_id:path}", response_model=ModelCard, summary="Describe one model")
    async def get_model(model_id: str, caller: CallerDep) -> ModelCard:
        router = get_router()
        if model_id not in router.models():
            known = router.models()
            raise OpenAIError(404, str(ModelNotFound(model_id, known)), param="model", code="model_not_found")
        return ModelCard(id=model_id)

    @api.post(
        "/v1/chat/completions",
        response_model=ChatResponse,
        responses=_CHAT_RESPONSES,
        summary="Create a chat completion (a served model, or ensemble/<name>)",
    )
    async def chat_completions(request: ChatRequest, caller: CallerDep) -> Response:
        key_id = caller.key_id if caller.key_id != "admin_key" else None
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
                ensemble_response = await ensemble_chat(name, request, caller)
                ensemble_response.model = model
                if not request.stream:
                    return JSONResponse(ensemble_response.model_dump(mode="json"))
                chunks: AsyncIterator[ChatChunk] = _once(ensemble_response)
            else:
                calls = get_calls()
                if model not in get_router().models():
                    raise ModelNotFound(model, get_router().models())
                if not request.stream:
                    response = await calls.chat(request, model=model, tenant=caller.tenant, key_id=key_id)
                    response.model = model
                    return JSONResponse(response.model_dump(mode="json"))
                chunks = calls.stream(request, model=model, tenant=caller.tenant, key_id=key_id)
            # Pull the first chunk before answering, so an unknown model or a failing replica
            # is a proper HTTP error rather than an error event inside a 200 stream.
            try:
                first: ChatChunk | None = await anext(chunks)
            except StopAsyncIteration:
                first = None
        except OpenAIError:
            raise
        except BudgetExhausted as e:
            return _quota_error(e)
        except (RedisConnectionError, RedisTimeoutError, OutOfMemoryError) as e:
            return _store_error(e)
        except Exception as e:
            return _engine_error(e)
        return StreamingResponse(
            _sse_stream(first, chunks, model=model, include_usage=include_usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return api
