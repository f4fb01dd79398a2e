"""The errors of ``RunService``: typed, with a stable ``code`` and a message for people. The HTTP layer maps
them to statuses (``NotFound`` → 404, ``Conflict`` → 409, ``InvalidInput`` → 422, ``Forbidden`` → 403)."""

from __future__ import annotations

from typing import Any

__all__ = ["Conflict", "Forbidden", "InvalidInput", "NotFound", "ServiceError"]


class ServiceError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class NotFound(ServiceError):
    """No such thing for this caller (another tenant's things are not found either)."""


class Conflict(ServiceError):
    """The request contradicts the state it meets (a reused idempotency key, a run in the wrong state)."""


class Forbidden(ServiceError):
    """The caller is known but may not do this (an admin route without an admin key)."""


class InvalidInput(ServiceError):
    """A value the request gave is wrong; ``field`` names it."""

    def __init__(self, code: str, message: str, *, field: str, value: Any = None) -> None:
        super().__init__(code, message)
        self.field = field
        self.value = value
