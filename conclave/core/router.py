"""``ModelRouter``: how run code reaches models by name, without knowing where they run.

The cluster implements it twice — ``ServeRouter`` (``cluster/pool.py``: Ray Serve deployments, the
production path) and ``LocalRouter`` (``cluster/router.py``: engines in the calling process, for tests and
benchmarks of the orchestration) — and the runner hands one to every run through its ``RunContext``. The
protocol lives here, below the agents, so that nothing above ``core`` imports the cluster.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from conclave.schema.chat import ChatChunk, ChatRequest, ChatResponse

__all__ = ["ModelRouter"]


@runtime_checkable
class ModelRouter(Protocol):
    """Reach a model by name. ``chat`` raises ``ModelNotFound`` for an unknown name and
    ``EngineError`` for a failed call (retries, where they make sense, happen inside)."""

    async def chat(self, model: str, request: ChatRequest) -> ChatResponse: ...

    def stream(self, model: str, request: ChatRequest) -> AsyncIterator[ChatChunk]: ...

    def models(self) -> list[str]: ...

    def context_window(self, model: str) -> int | None: ...
