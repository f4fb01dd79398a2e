"""One error shape for the whole API: ``{"error": {"code", "message", "details"}}``.

Validation errors name the field, the value and what was expected; Redis being down is a 503 with
a message, never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from conclave.core.kinds import SpecError
from conclave.schema.errors import FieldProblem, field_problems, format_problems, short_value

__all__ = ["ApiError", "ErrorBody", "ErrorResponse", "install_error_handlers", "describe_errors"]

log = logging.getLogger(__name__)

#: Seconds a client is asked to wait before retrying when the store is unreachable or full.
RETRY_AFTER_S = 5


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


def describe_errors(errors: ValidationError | Sequence[Mapping[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Validation errors → one readable sentence and per-field details (``field``, ``message``, ``value``)."""
    problems = field_problems(errors)
    details = [p.model_dump(exclude_none=True) for p in problems]
    return format_problems(problems[:5]).replace("\n", "; ") or "invalid request", details


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
        message, details = describe_errors(exc)
        return _json(422, "invalid_request", message, details)

    @app.exception_handler(SpecError)
    async def _spec(_: Request, exc: SpecError) -> JSONResponse:
        d = FieldProblem(field=exc.field, message=exc.message, value=short_value(exc.value))
        return _json(422, "invalid_task", str(exc), [d.model_dump(exclude_none=True)])

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
        response = _json(503, "store_unavailable", f"the run store (Redis) is unreachable: {exc}")
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response

    @app.exception_handler(OutOfMemoryError)
    async def _full(_: Request, exc: Exception) -> JSONResponse:
        log.warning("the run store is full: %s", exc)
        response = _json(
            503,
            "store_full",
            "the run store is full (Redis reached its maxmemory); nothing was written: retry later, or ask the "
            "operator to purge old runs or raise maxmemory",
        )
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response

    @app.exception_handler(Exception)
    async def _any(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _json(500, "internal_error", f"{type(exc).__name__}: {exc}")
