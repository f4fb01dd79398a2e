"""The Python SDK: ``Client`` and ``AsyncClient`` over the HTTP API."""

from .client import AsyncClient, Client
from .errors import BudgetExceeded, ConclaveError, Conflict, NotFound, ServiceUnavailable, Unauthorized, ValidationError

__all__ = [
    "AsyncClient",
    "BudgetExceeded",
    "Client",
    "ConclaveError",
    "Conflict",
    "NotFound",
    "ServiceUnavailable",
    "Unauthorized",
    "ValidationError",
]
