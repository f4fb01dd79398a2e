"""The two transports: execute the request layer's calls and flows over ``httpx.Client`` or
``httpx.AsyncClient``.

This is the only place where the sync and the async client differ, and it holds no protocol logic:
how to send a request, sleep, run blocking work, enforce a deadline and read a Server-Sent Events
stream (``httpx-sse``), once with threads' primitives and once with asyncio's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from contextlib import AsyncExitStack, ExitStack, aclosing, closing
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from httpx_sse import EventSource, ServerSentEvent, aconnect_sse, connect_sse

from .errors import ConclaveError
from .request import Call, Connect, Deadline, Emit, Flow, NextEvent, Offload, Sleep, StreamFlow, response_error

__all__ = ["AsyncTransport", "SyncTransport", "Transport"]

T = TypeVar("T")
E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class _Done:
    """What a driver yields last: the flow's result."""

    value: Any


def _deadline_error(seconds: float) -> TimeoutError:
    return TimeoutError(f"deadline of {seconds:g} s passed")


def _require_event_stream(source: EventSource, call: Call[None]) -> None:
    """An error status raises its ``ConclaveError``; a 200 that is not an event stream (a proxy's page)
    is an error too, and not one that reconnecting would fix."""
    r = source.response
    if not r.is_success:
        raise response_error(r)
    ctype = r.headers.get("content-type", "")
    if "text/event-stream" not in ctype:
        raise ConclaveError(
            f"{call.method} {call.path}: expected an event stream, got {ctype or 'no content type'}",
            status=r.status_code,
            code="not_an_event_stream",
        )


def _shorter(t: httpx.Timeout, seconds: float) -> httpx.Timeout:
    def cap(v: float | None) -> float:
        return seconds if v is None else min(v, seconds)

    return httpx.Timeout(connect=cap(t.connect), read=cap(t.read), write=cap(t.write), pool=cap(t.pool))


class SyncTransport:
    """Executes calls and flows with an ``httpx.Client``, blocking."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def send(self, call: Call[T], *, within: float | None = None) -> T:
        """One request; ``within`` (seconds) shortens every phase's timeout."""
        kw = call.request_kwargs()
        kw["timeout"] = self._timeout(call, within)
        r = self.http.request(call.method, call.path, **kw)
        return call.result(r)

    def run(self, flow: Flow[T]) -> T:
        """Drive a flow to its result."""
        for item in self._drive(flow):
            if isinstance(item, _Done):
                return item.value  # type: ignore[no-any-return]
            raise TypeError("a flow run for its result emitted a value; iterate it instead")
        raise AssertionError("unreachable: a drive ends with _Done")

    def iterate(self, flow: StreamFlow[E]) -> Iterator[E]:
        """Drive a streaming flow, yielding what it emits; closing the iterator closes its stream."""
        with closing(self._drive(flow)) as items:
            for item in items:
                if isinstance(item, _Done):
                    return
                yield item.value

    def close(self) -> None:
        self.http.close()

    def _drive(self, flow: Any) -> Generator[Emit[Any] | _Done, None, None]:
        deadline: tuple[float, float] | None = None  # (monotonic end, seconds given)
        stream = _SyncStream(self.http)
        send: Any = None
        error: Exception | None = None
        try:
            while True:
                try:
                    op = flow.send(send) if error is None else flow.throw(error)
                except StopIteration as stop:
                    yield _Done(stop.value)
                    return
                send, error = None, None
                if isinstance(op, Emit):
                    yield op
                elif isinstance(op, Deadline):
                    deadline = (time.monotonic() + op.seconds, op.seconds)
                else:
                    try:
                        send = self._do(op, stream, deadline)
                    except Exception as e:  # handed to the flow, which decides (retry, re-raise)
                        error = e
        finally:
            stream.close()
            flow.close()

    def _do(self, op: Any, stream: _SyncStream, deadline: tuple[float, float] | None) -> Any:
        if deadline is None:
            return self._op(op, stream, None)
        end, given = deadline
        left = end - time.monotonic()
        if left <= 0:
            raise _deadline_error(given)
        if isinstance(op, Sleep) and op.seconds >= left:
            time.sleep(left)
            raise _deadline_error(given)
        try:
            return self._op(op, stream, left)
        except httpx.TimeoutException as e:
            if time.monotonic() >= end:
                raise _deadline_error(given) from e
            raise

    def _op(self, op: Any, stream: _SyncStream, within: float | None) -> Any:
        if isinstance(op, Call):
            return self.send(op, within=within)
        if isinstance(op, Sleep):
            time.sleep(op.seconds)
            return None
        if isinstance(op, Offload):
            return op.fn(*op.args)
        if isinstance(op, Connect):
            return stream.open(op.call, self._timeout(op.call, within))
        if isinstance(op, NextEvent):
            return stream.next()
        raise TypeError(f"not a flow operation: {op!r}")

    def _timeout(self, call: Call[Any], within: float | None) -> httpx.Timeout:
        t = httpx.Timeout(call.timeout if call.timeout is not None else self.http.timeout)
        return t if within is None else _shorter(t, within)


class _SyncStream:
    """At most one open event stream of a flow."""

    def __init__(self, http: httpx.Client) -> None:
        self._http = http
        self._stack = ExitStack()
        self._events: Iterator[ServerSentEvent] | None = None

    def open(self, call: Call[None], timeout: httpx.Timeout) -> None:
        self.close()
        kw = {**call.request_kwargs(), "timeout": timeout}
        source = self._stack.enter_context(connect_sse(self._http, call.method, call.path, **kw))
        if not source.response.is_success:
            source.response.read()
        _require_event_stream(source, call)
        self._events = source.iter_sse()

    def next(self) -> ServerSentEvent | None:
        if self._events is None:
            raise RuntimeError("NEXT_EVENT before Connect")
        return next(self._events, None)

    def close(self) -> None:
        self._events = None
        self._stack.close()
        self._stack = ExitStack()


class AsyncTransport:
    """Executes calls and flows with an ``httpx.AsyncClient``; never blocks the event loop."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def send(self, call: Call[T]) -> T:
        """One request."""
        r = await self.http.request(call.method, call.path, **call.request_kwargs())
        return call.result(r)

    async def run(self, flow: Flow[T]) -> T:
        """Drive a flow to its result."""
        async for item in self._drive(flow):
            if isinstance(item, _Done):
                return item.value  # type: ignore[no-any-return]
            raise TypeError("a flow run for its result emitted a value; iterate it instead")
        raise AssertionError("unreachable: a drive ends with _Done")

    async def iterate(self, flow: StreamFlow[E]) -> AsyncIterator[E]:
        """Drive a streaming flow, yielding what it emits; ``aclose()`` (or ``contextlib.aclosing``)
        closes its stream at once."""
        async with aclosing(self._drive(flow)) as items:
            async for item in items:
                if isinstance(item, _Done):
                    return
                yield item.value

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _drive(self, flow: Any) -> AsyncGenerator[Emit[Any] | _Done, None]:
        deadline: tuple[float, float] | None = None  # (loop time at the end, seconds given)
        stream = _AsyncStream(self.http)
        send: Any = None
        error: Exception | None = None
        try:
            while True:
                try:
                    op = flow.send(send) if error is None else flow.throw(error)
                except StopIteration as stop:
                    yield _Done(stop.value)
                    return
                send, error = None, None
                if isinstance(op, Emit):
                    yield op
                elif isinstance(op, Deadline):
                    deadline = (asyncio.get_running_loop().time() + op.seconds, op.seconds)
                else:
                    bound = asyncio.timeout_at(deadline[0] if deadline else None)
                    try:
                        async with bound:
                            send = await self._do(op, stream)
                    except TimeoutError as e:
                        error = _deadline_error(deadline[1]) if deadline and bound.expired() else e
                    except Exception as e:  # handed to the flow, which decides (retry, re-raise)
                        error = e
        finally:
            await stream.close()
            flow.close()

    async def _do(self, op: Any, stream: _AsyncStream) -> Any:
        if isinstance(op, Call):
            return await self.send(op)
        if isinstance(op, Sleep):
            await asyncio.sleep(op.seconds)
            return None
        if isinstance(op, Offload):
            return await asyncio.to_thread(op.fn, *op.args)
        if isinstance(op, Connect):
            return await stream.open(op.call)
        if isinstance(op, NextEvent):
            return await stream.next()
        raise TypeError(f"not a flow operation: {op!r}")


class _AsyncStream:
    """At most one open event stream of a flow."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http
        self._stack = AsyncExitStack()
        self._events: AsyncIterator[ServerSentEvent] | None = None

    async def open(self, call: Call[None]) -> None:
        await self.close()
        source = await self._stack.enter_async_context(
            aconnect_sse(self._http, call.method, call.path, **call.request_kwargs())
        )
        if not source.response.is_success:
            await source.response.aread()
        _require_event_stream(source, call)
        self._events = source.aiter_sse()

    async def next(self) -> ServerSentEvent | None:
        if self._events is None:
            raise RuntimeError("NEXT_EVENT before Connect")
        return await anext(self._events, None)

    async def close(self) -> None:
        events, self._events = self._events, None
        if events is not None and hasattr(events, "aclose"):
            await events.aclose()
        await self._stack.aclose()
        self._stack = AsyncExitStack()


Transport = SyncTransport | AsyncTransport
