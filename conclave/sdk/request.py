"""The request layer: every call of the API described once, as data, for both clients.

A ``Call`` says what to send (method, path, params, body, headers) and how to read the answer (the
response model, which error statuses are answers rather than errors). A call that needs more than one
request — wait for a run, follow its events, download and unpack a workspace — is a *flow*: a generator
that yields ``Call``s and the few other operations below and receives their results. Flows do no I/O
themselves; ``transport.SyncTransport`` and ``transport.AsyncTransport`` execute them, so the sync and the
async client share every line of protocol logic and differ only in how they wait.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeAlias, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter

from .errors import ConclaveError, error_for

__all__ = [
    "Call",
    "Connect",
    "Deadline",
    "Emit",
    "Flow",
    "NEXT_EVENT",
    "NextEvent",
    "Offload",
    "Op",
    "Sleep",
    "StreamFlow",
    "response_error",
    "json_body",
    "model",
    "model_list",
    "no_content",
    "path",
    "path_part",
    "raw",
]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
E = TypeVar("E")

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
Parse = Callable[[httpx.Response], T]
ParamValue = str | int | float | bool


def path(template: str, *parts: str) -> str:
    """``path("/v1/runs/{}/cost", run_id)``: each part percent-encoded, so an id can never reach another
    route (``../admin``); a part given as ``path_part`` keeps its slashes (workspace file paths)."""
    return template.format(*(p if isinstance(p, _PathPart) else quote(p, safe="") for p in parts))


class _PathPart(str):
    """A path part whose ``/`` separate segments (already quoted, slashes kept)."""


def path_part(value: str) -> str:
    """A multi-segment path part, e.g. a workspace file path: encoded, slashes kept."""
    return _PathPart(quote(value, safe="/"))


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One HTTP request and how its answer is read.

    ``parse`` turns a successful response (or one whose status is in ``accept``) into the result; any
    other status raises the ``ConclaveError`` subclass for it (``errors.error_for``). ``params`` and
    headers whose value is ``None`` are left out, so a builder can pass optional arguments straight in.
    """

    method: Method
    path: str
    parse: Parse[T]
    params: Mapping[str, ParamValue | None] = field(default_factory=dict)
    json: Any = None
    headers: Mapping[str, str | None] = field(default_factory=dict)
    accept: frozenset[int] = frozenset()
    timeout: httpx.Timeout | None = None

    def request_kwargs(self) -> dict[str, Any]:
        """The keyword arguments for ``httpx.Client.request`` / ``stream`` (everything but method, path)."""
        kw: dict[str, Any] = {
            "params": {k: _param(v) for k, v in self.params.items() if v is not None},
            "headers": {k: v for k, v in self.headers.items() if v is not None},
        }
        if self.json is not None:
            kw["json"] = self.json
        if self.timeout is not None:
            kw["timeout"] = self.timeout
        return kw

    def result(self, response: httpx.Response) -> T:
        """The call's result from a response whose body has been read."""
        if not response.is_success and response.status_code not in self.accept:
            raise response_error(response)
        return self.parse(response)


def _param(v: ParamValue) -> str | int | float:
    # httpx would send True as "true" too; explicit, because FastAPI reads "True" as true but Go or
    # other servers may not.
    return str(v).lower() if isinstance(v, bool) else v


def response_error(response: httpx.Response) -> ConclaveError:
    """The error for a failed response: the API's ``{"error": {code, message, details}}`` when the body
    has one, else the status and the start of the body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    return error_for(response.status_code, body, f"HTTP {response.status_code}: {response.text[:200]}")


# -- parsers ---------------------------------------------------------------------------------------
def model(cls: type[M]) -> Parse[M]:
    """Parse the body as one ``cls``."""

    def parse(r: httpx.Response) -> M:
        return cls.model_validate_json(r.content)

    return parse


def model_list(cls: type[M]) -> Parse[list[M]]:
    """Parse the body as a JSON list of ``cls``."""
    adapter = TypeAdapter(list[cls])  # type: ignore[valid-type]

    def parse(r: httpx.Response) -> list[M]:
        return list(adapter.validate_json(r.content))

    return parse


def json_body(r: httpx.Response) -> Any:
    """The decoded JSON body (``None`` when empty)."""
    return r.json() if r.content else None


def no_content(r: httpx.Response) -> None:
    """Nothing to read (``204 No Content``)."""
    return None


def raw(r: httpx.Response) -> bytes:
    """The body's bytes."""
    return r.content


# -- flow operations -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait this long (``time.sleep`` or ``asyncio.sleep``); the flow receives ``None``."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Deadline:
    """From here on the flow must end within ``seconds``: the transport raises ``TimeoutError`` into the
    flow at the yield it is waiting on when time runs out — also in the middle of a request (the async
    transport uses ``asyncio.timeout_at``, the sync one shortens each request's timeout)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Offload(Generic[T]):
    """Run ``fn(*args)``, which blocks (file I/O), off the event loop in the async client."""

    fn: Callable[..., T]
    args: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class Connect:
    """Open a Server-Sent Events stream with ``call`` (closing the one opened before); an error status
    raises like any call. Read it with ``NEXT_EVENT``."""

    call: Call[None]


@dataclass(frozen=True, slots=True)
class NextEvent:
    """The next event of the open stream (an ``httpx_sse.ServerSentEvent``), or ``None`` once it ends."""


NEXT_EVENT = NextEvent()


@dataclass(frozen=True, slots=True)
class Emit(Generic[E]):
    """Hand ``value`` to the caller of a streaming flow (the item its iterator yields)."""

    value: E


Op: TypeAlias = Call[Any] | Sleep | Deadline | Offload[Any] | Connect | NextEvent
Flow: TypeAlias = Generator[Op, Any, T]
"""A flow that ends with a result of type ``T``."""
StreamFlow: TypeAlias = Generator[Op | Emit[E], Any, None]
"""A flow whose caller iterates over the ``Emit``-ted values of type ``E``."""
