"""``ModelRouter``: how callers reach models by name.

The cluster provides two: ``ServeRouter`` in ``pool.py`` (Ray Serve deployments, the production path) and
``LocalRouter`` (engines in the calling process: the standalone worker, tests and benchmarks).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

from conclave.cluster.engine import Engine
from conclave.cluster.retry import RetryPolicy, retry_call, retry_stream
from conclave.schema.chat import ChatChunk, ChatRequest, ChatResponse, ModelNotFound

__all__ = ["LocalRouter"]


class LocalRouter:
    """Engines held in this process. A call to a model with a policy in ``retry`` is retried under it
    (the standalone worker passes each model's, as the Serve router uses them); without one it is
    tried once, which is what a test double of the cluster wants."""

    def __init__(
        self,
        engines: Mapping[str, Engine],
        context_windows: Mapping[str, int] | None = None,
        retry: Mapping[str, RetryPolicy] | None = None,
    ) -> None:
        self.engines = dict(engines)
        self._ctx = dict(context_windows or {})
        self._retry = dict(retry or {})

    def _engine(self, model: str) -> Engine:
        try:
            return self.engines[model]
        except KeyError:
            raise ModelNotFound(model, list(self.engines)) from None

    async def chat(self, model: str, request: ChatRequest) -> ChatResponse:
        engine = self._engine(model)
        policy = self._retry.get(model)
        if policy is None:
            return await engine.chat(request)
        return await retry_call(policy, model, lambda: engine.chat(request))

    async def stream(self, model: str, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        engine = self._engine(model)
        policy = self._retry.get(model)
        chunks = (
            engine.stream(request) if policy is None else retry_stream(policy, model, lambda: engine.stream(request))
        )
        async for chunk in chunks:
            yield chunk

    def models(self) -> list[str]:
        return list(self.engines)

    def context_window(self, model: str) -> int | None:
        return self._ctx.get(model)

    async def close(self) -> None:
        await asyncio.gather(*(e.close() for e in self.engines.values()), return_exceptions=True)
