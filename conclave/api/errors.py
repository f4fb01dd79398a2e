"""One error shape for the whole API: ``{"error": {"code", "message", "details"}}``.

Validation errors name the field, the value and what was expected; Redis being down is a 503 with
a message, never a traceback.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from conclave.controller.kinds import SpecError

__all__ = ["ApiError", "ErrorBody", "ErrorResponse", "install_error_handlers", "describe_errors"]

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def _json(status: int, code: str, message: str, details: list[dict[str, Any]] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message, "details": details}})


def _short(value: Any) -> Any:
    """A JSON-safe, bounded echo of the offending value (bodies may hold bytes or be huge)."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def describe_errors(errors: list[Any]) -> tuple[str, list[dict[str, Any]]]:
    """Pydantic/FastAPI errors → one readable sentence and per-field details."""
    details = []
    for e in errors:
        loc = [str(x) for x in e.get("loc", ()) if x not in ("body",)]
        field = ".".join(loc) or "body"
        item: dict[str, Any] = {"field": field, "message": e.get("msg", "invalid")}
        if e.get("type") == "extra_forbidden":
            item["message"] = f"unknown field {loc[-1]!r}" if loc else "unknown field"
        if "input" in e and e.get("type") != "missing":
            item["value"] = _short(e["input"])
        details.append(item)
    message = "; ".join(
        f"{d['field']}: {d['message']}" + (f" (got {d['value']!r})" if "value" in d else "") for d in details[:5]
    )
    return message or "invalid request", details


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return _json(exc.status, exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, details = describe_errors(list(exc.errors()))
        return _json(422, "invalid_request", message, details)

    @app.exception_handler(ValidationError)
    async def _pyd(_: Request, exc: ValidationError) -> JSONResponse:
        message, details = describe_errors(list(exc.errors()))
        return _json(422, "invalid_request", message, details)

    @app.exception_handler(SpecError)
    async def _spec(_: Request, exc: SpecError) -> JSONResponse:
        d: dict[str, Any] = {"field": exc.field, "message": exc.message}
        if exc.value is not None:
            d["value"] = _short(exc.value)
        return _json(422, "invalid_task", str(exc), [d])

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 403: "forbidden"}.get(
            exc.status_code, "http_error"
        )
        return _json(exc.status_code, code, str(exc.detail))

    @app.exception_handler(RedisConnectionError)
    @app.exception_handler(RedisTimeoutError)
    async def _redis(_: Request, exc: Exception) -> JSONResponse:
        log.warning("Redis unavailable: %s", exc)
        return _json(503, "store_unavailable", f"the run store (Redis) is unreachable: {exc}")

    @app.exception_handler(Exception)
    async def _any(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _json(500, "internal_error", f"{type(exc).__name__}: {exc}")
