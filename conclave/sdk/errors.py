"""The SDK's exceptions: one per thing a caller handles differently."""

from __future__ import annotations

from typing import Any

__all__ = [
    "BudgetExceeded",
    "ConclaveError",
    "Conflict",
    "NotFound",
    "ServiceUnavailable",
    "Unauthorized",
    "ValidationError",
    "error_for",
]


class ConclaveError(Exception):
    def __init__(
        self, message: str, *, status: int = 0, code: str = "", details: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.details = details or []


class NotFound(ConclaveError):
    pass


class Unauthorized(ConclaveError):
    pass


class Conflict(ConclaveError):
    pass


class ValidationError(ConclaveError):
    """The server rejected the request; ``details`` lists ``{"field", "message", "value"}``."""


class BudgetExceeded(ConclaveError):
    """A run stopped because a budget limit ran out (raised by ``wait(..., raise_on_failure=True)``)."""


class ServiceUnavailable(ConclaveError):
    pass


def error_for(status: int, body: Any, fallback: str) -> ConclaveError:
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        message, code, details = str(err.get("message") or fallback), str(err.get("code") or ""), err.get("details")
    else:
        message, code, details = fallback, "", None
    cls: type[ConclaveError] = {
        401: Unauthorized,
        403: Unauthorized,
        404: NotFound,
        409: Conflict,
        422: ValidationError,
        503: ServiceUnavailable,
    }.get(status, ConclaveError)
    return cls(message, status=status, code=code, details=details if isinstance(details, list) else None)
