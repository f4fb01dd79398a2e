"""Resources: groups of calls (``client.runs``, ``client.admin``…) written once for both clients.

A resource class lists its calls as descriptors over the request layer's builders::

    class Runs(Resource[TransportT]):
        get = endpoint(get_run)      # get_run(run_id) -> Call[Run]
        wait = flow(wait_for_run)    # a generator of calls and sleeps that returns a Run
        events = stream(run_events)  # a generator that emits Events

On ``Client`` (a ``SyncTransport``) ``client.runs.get(id)`` returns a ``Run``; on ``AsyncClient`` the
same attribute is a coroutine function, and a ``stream`` an async iterator. The builder's signature and
docstring are the method's, for type checkers (the ``__get__`` overloads) and for ``help()`` alike.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, ClassVar, Generic, Literal, ParamSpec, Self, TypeVar, overload

from .request import Call, Flow, StreamFlow
from .transport import AsyncTransport, SyncTransport

__all__ = ["Endpoint", "FlowMethod", "Resource", "StreamMethod", "TransportT", "endpoint", "flow", "stream"]

P = ParamSpec("P")
T = TypeVar("T")
E = TypeVar("E")
TransportT = TypeVar("TransportT", bound="SyncTransport | AsyncTransport")


class Resource(Generic[TransportT]):
    """A group of calls bound to one client's transport."""

    def __init__(self, transport: TransportT) -> None:
        self._transport: TransportT = transport


class _Method(Generic[P, T]):
    """A non-data descriptor: the bound method is built on first access and cached on the resource.

    ``_runs`` names the transport method that executes what the builder returns: ``send`` (a call),
    ``run`` (a flow) or ``iterate`` (a streaming flow)."""

    _runs: ClassVar[Literal["send", "run", "iterate"]]

    def __init__(self, build: Callable[P, Any]) -> None:
        self._build = build
        self._name = build.__name__
        self.__doc__ = build.__doc__

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self._name = name

    def _bind(self, obj: Resource[Any]) -> Callable[..., Any]:
        build, execute = self._build, getattr(obj._transport, self._runs)
        fn: Callable[..., Any]
        if isinstance(obj._transport, SyncTransport) or self._runs == "iterate":

            def fn(*args: Any, **kwargs: Any) -> Any:
                return execute(build(*args, **kwargs))

        else:

            async def fn(*args: Any, **kwargs: Any) -> Any:
                return await execute(build(*args, **kwargs))

        functools.update_wrapper(fn, build)
        fn.__name__ = self._name
        obj.__dict__[self._name] = fn
        return fn


class Endpoint(_Method[P, T]):
    """One request: the builder returns a ``Call[T]``."""

    _runs = "send"

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, obj: Resource[SyncTransport], owner: type[Any]) -> Callable[P, T]: ...
    @overload
    def __get__(self, obj: Resource[AsyncTransport], owner: type[Any]) -> Callable[P, Coroutine[Any, Any, T]]: ...
    def __get__(self, obj: Resource[Any] | None, owner: type[Any]) -> Any:
        return self if obj is None else self._bind(obj)


class FlowMethod(_Method[P, T]):
    """Several requests: the builder returns a ``Flow[T]`` (a generator of operations)."""

    _runs = "run"

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, obj: Resource[SyncTransport], owner: type[Any]) -> Callable[P, T]: ...
    @overload
    def __get__(self, obj: Resource[AsyncTransport], owner: type[Any]) -> Callable[P, Coroutine[Any, Any, T]]: ...
    def __get__(self, obj: Resource[Any] | None, owner: type[Any]) -> Any:
        return self if obj is None else self._bind(obj)


class StreamMethod(_Method[P, E]):
    """An iterator: the builder returns a ``StreamFlow[E]``; ``Iterator[E]`` on the sync client,
    ``AsyncIterator[E]`` on the async one. Nothing is sent until the first item is asked for."""

    _runs = "iterate"

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, obj: Resource[SyncTransport], owner: type[Any]) -> Callable[P, Iterator[E]]: ...
    @overload
    def __get__(self, obj: Resource[AsyncTransport], owner: type[Any]) -> Callable[P, AsyncIterator[E]]: ...
    def __get__(self, obj: Resource[Any] | None, owner: type[Any]) -> Any:
        return self if obj is None else self._bind(obj)


def endpoint(build: Callable[P, Call[T]]) -> Endpoint[P, T]:
    """A method that sends the ``Call`` its builder returns and answers its result."""
    return Endpoint(build)


def flow(build: Callable[P, Flow[T]]) -> FlowMethod[P, T]:
    """A method that drives the flow its builder returns and answers the flow's result."""
    return FlowMethod(build)


def stream(build: Callable[P, StreamFlow[E]]) -> StreamMethod[P, E]:
    """A method that returns an iterator over what the builder's flow emits."""
    return StreamMethod(build)
