"""The ``Engine`` contract: the one thing every model back end implements.

An engine turns an OpenAI-style chat request into a response with token usage counted by the engine
itself. It lives inside a model replica (a Ray Serve actor) or, for tests and benchmarks of the
orchestration, in the calling process. Engines know nothing about runs, budgets or agents.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator

from conclave.cluster.protocol import (
    ChatChunk,
    ChatChunkChoice,
    ChatDelta,
    ChatRequest,
    ChatResponse,
)

__all__ = ["Engine", "EngineError", "ModelNotFound", "NoHealthyReplica", "chunks_of"]


class EngineError(RuntimeError):
    """A model call failed. ``retryable`` says whether the same call may succeed on another try
    (an overloaded server, a dead replica), as opposed to a request the engine can never serve."""

    def __init__(self, message: str, *, retryable: bool = False, status: int = 500) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status

    def __reduce__(self) -> tuple[object, ...]:
        # Errors cross process boundaries (replica → caller) by pickle; keep the flags.
        return (_rebuild_engine_error, (type(self), str(self), self.retryable, self.status, dict(self.__dict__)))


class ModelNotFound(EngineError):
    def __init__(self, name: str, known: list[str]) -> None:
        listed = ", ".join(sorted(known)) or "none"
        super().__init__(f"model {name!r} is not served here; known models: {listed}", status=404)
        self.name = name
        self.known = sorted(known)

    def __reduce__(self) -> tuple[object, ...]:
        return (ModelNotFound, (self.name, self.known))


class NoHealthyReplica(EngineError):
    def __init__(self, name: str, detail: str = "") -> None:
        extra = f": {detail}" if detail else ""
        super().__init__(f"model {name!r} has no healthy replica{extra}", retryable=True, status=503)
        self.name = name
        self.detail = detail

    def __reduce__(self) -> tuple[object, ...]:
        return (NoHealthyReplica, (self.name, self.detail))


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


def _rebuild_engine_error(
    cls: type[EngineError], message: str, retryable: bool, status: int, state: dict[str, object]
) -> EngineError:
    err = cls.__new__(cls)
    EngineError.__init__(err, message, retryable=retryable, status=status)
    err.__dict__.update(state)
    return err


def chunks_of(response: ChatResponse) -> list[ChatChunk]:
    """A finished response as the chunks a streaming client expects: role, content or tool calls,
    finish reason per choice, then a final usage chunk."""
    out: list[ChatChunk] = []
    for choice in response.choices:
        msg = choice.message
        out.append(
            ChatChunk(
                id=response.id,
                model=response.model,
                created=response.created,
                choices=[ChatChunkChoice(index=choice.index, delta=ChatDelta(role="assistant", content=""))],
            )
        )
        if msg.content:
            out.append(
                ChatChunk(
                    id=response.id,
                    model=response.model,
                    created=response.created,
                    choices=[ChatChunkChoice(index=choice.index, delta=ChatDelta(content=msg.content))],
                )
            )
        if msg.tool_calls:
            calls = [
                {"index": i, "id": tc.id, "type": "function", "function": tc.function.model_dump()}
                for i, tc in enumerate(msg.tool_calls)
            ]
            out.append(
                ChatChunk(
                    id=response.id,
                    model=response.model,
                    created=response.created,
                    choices=[ChatChunkChoice(index=choice.index, delta=ChatDelta(tool_calls=calls))],
                )
            )
        out.append(
            ChatChunk(
                id=response.id,
                model=response.model,
                created=response.created,
                choices=[ChatChunkChoice(index=choice.index, delta=ChatDelta(), finish_reason=choice.finish_reason)],
            )
        )
    out.append(
        ChatChunk(id=response.id, model=response.model, created=response.created, choices=[], usage=response.usage)
    )
    return out
