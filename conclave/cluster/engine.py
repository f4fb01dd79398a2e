"""The ``Engine`` contract: the one thing every model back end implements.

An engine turns an OpenAI-style chat request into a response with token usage counted by the engine
itself. It lives inside a model replica (a Ray Serve actor) or, for tests and benchmarks of the
orchestration, in the calling process. Engines know nothing about runs, budgets or agents.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator

from conclave.schema.chat import ChatChunk, ChatRequest, ChatResponse, chunks_of

__all__ = ["Engine"]


class Engine(abc.ABC):
    """A chat model back end.

    ``chat`` answers a request with every one of its ``n`` choices and a ``usage`` whose token counts
    come from the engine's own tokenizer. It must be safe to call concurrently: an engine that can
    only run one generation at a time (llama.cpp) queues callers itself. Cancelling the awaiting task
    aborts the generation.

    ``stream`` yields ``chat.completion.chunk`` objects; the last one carries ``usage``. Closing the
    iterator early (``aclose()``, or leaving an ``async for``) aborts the generation so it stops
    consuming the replica. The default implementation streams a finished ``chat`` result; engines
    that generate token by token override it.
    """

    #: A short name used in metrics and spans (``gen_ai.provider.name``).
    provider: str = "conclave"

    @abc.abstractmethod
    async def chat(self, request: ChatRequest) -> ChatResponse:
        """Answer ``request``; raise ``EngineError`` on failure."""

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        response = await self.chat(request)
        for chunk in chunks_of(response):
            yield chunk

    async def health(self) -> None:
        """Raise if the engine cannot serve (a replica's health check calls this)."""
        return None

    async def close(self) -> None:
        """Release what the engine holds (threads, connections, model memory)."""
        return None
