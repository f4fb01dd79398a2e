"""``ModelRouter``: how callers reach models by name.

The cluster provides two: ``ServeRouter`` in ``pool.py`` (Ray Serve deployments, the production path) and
``LocalRouter`` (engines in the calling process, for tests and benchmarks of the orchestration).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

from conclave.cluster.engine import Engine
from conclave.schema.chat import ChatChunk, ChatRequest, ChatResponse, EngineError, ModelNotFound

__all__ = ["LocalRouter", "is_retryable"]


class LocalRouter:
    """Engines held in this process. A test double for the cluster: no replicas, no retries."""

    def __init__(self, engines: Mapping[str, Engine], context_windows: Mapping[str, int] | None = None) -> None:
        self.engines = dict(engines)
        self._ctx = dict(context_windows or {})

    def _engine(self, model: str) -> Engine:
        try:
            return self.engines[model]
        except KeyError:
            raise ModelNotFound(model, list(self.engines)) from None

    async def chat(self, model: str, request: ChatRequest) -> ChatResponse:
        return await self._engine(model).chat(request)

    async def stream(self, model: str, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        async for chunk in self._engine(model).stream(request):
            yield chunk

    def models(self) -> list[str]:
        return list(self.engines)

    def context_window(self, model: str) -> int | None:
        return self._ctx.get(model)

    async def close(self) -> None:
        await asyncio.gather(*(e.close() for e in self.engines.values()), return_exceptions=True)


def is_retryable(err: BaseException) -> bool:
    return isinstance(err, EngineError) and err.retryable
