"""Conclave: budget-tracked agent runs and model ensembles on Ray, persisted in Redis.

``from conclave import Client, AsyncClient`` gives the SDK; the server side lives in the
subpackages (``cluster``, ``budgets``, ``tools``, ``agents``, ``controller``, ``api``).
"""

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["AsyncClient", "Client", "__version__"]

if TYPE_CHECKING:
    from conclave.sdk import AsyncClient, Client


def __getattr__(name: str) -> Any:
    # Lazy, so that importing a server module never pulls in httpx clients and vice versa.
    if name in ("Client", "AsyncClient"):
        import conclave.sdk as sdk

        return getattr(sdk, name)
    raise AttributeError(name)
