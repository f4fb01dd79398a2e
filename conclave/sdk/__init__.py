"""The Python SDK: ``Client`` and ``AsyncClient`` over the HTTP API, and the errors they raise.

Everything else in the package is how they are built (``client.py`` says where to look)."""

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
