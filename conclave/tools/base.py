"""The ``Tool`` contract: a pydantic argument model (its JSON schema is what the model sees), an async
``run``, and an idempotency key per call.

A tool never touches Redis: it reads and writes the run's ``Workspace``, whose changes commit with
the step that made the call. A tool reports a problem the model can act on by raising ``ToolError``
(or returning ``ToolResult(is_error=True)``); ``execute`` turns that, malformed arguments, and any
unexpected exception into an error result, so a bad call never crashes the run.

Two ways to write one::

    class Shout(Tool):
        name = "shout"
        description = "Upper-case a text."
        Args = ShoutArgs                     # a pydantic model

        async def run(self, args, ctx):      # args is a ShoutArgs
            return args.text.upper()

    @tool
    def add(a: int, b: int) -> int:
        "Add two integers."
        return a + b
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from conclave.schema.chat import FunctionDef, ToolDef

from .settings import ToolSettings

if TYPE_CHECKING:
    from conclave.core.workspace import Workspace

__all__ = [
    "FunctionTool",
    "Tool",
    "ToolArgumentError",
    "ToolContext",
    "ToolError",
    "ToolResult",
    "clean_schema",
    "execute",
    "format_validation_error",
    "idempotency_key",
    "tool",
]

log = logging.getLogger(__name__)

#: Results longer than this are cut (with a note) before they reach the model.
MAX_RESULT_CHARS = 16_000


class ToolError(Exception):
    """A failure the model should read and may correct (bad path, file missing, limit hit)."""


class ToolArgumentError(ToolError):
    """The model's arguments do not fit the tool's schema; the message names each field."""


@dataclass
class ToolResult:
    """What a call returns to the model (``content``) and, optionally, to the trace (``data``)."""

    content: str
    is_error: bool = False
    data: dict[str, Any] | None = None


def idempotency_key(run_id: str, step_key: str, index: int) -> str:
    """Stable across resumes: the same run, step and call index always give the same key, so a
    tool with outside side effects (an MCP server, an HTTP API) can refuse to apply a call twice."""
    return hashlib.sha256(f"{run_id}\x00{step_key}\x00{index}".encode()).hexdigest()[:32]


@dataclass
class ToolContext:
    """What a call may use: the run's workspace, its identity and the tool settings. ``answer`` is a
    person's answer, for a call that waited for one (``ask_human``)."""

    workspace: Workspace
    run_id: str = ""
    step_key: str = ""
    call_index: int = 0
    settings: ToolSettings = field(default_factory=ToolSettings)
    answer: str | None = None

    @property
    def idempotency_key(self) -> str:
        return idempotency_key(self.run_id, self.step_key, self.call_index)


def format_validation_error(err: ValidationError, tool_name: str) -> str:
    """``invalid arguments for tool 'write': path: Field required; content: ... (got 5)``"""
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(arguments)"
        got = e.get("input")
        shown = "" if e["type"] == "missing" else f" (got {json.dumps(got, default=str)[:80]})"
        parts.append(f"{loc}: {e['msg']}{shown}")
    return f"invalid arguments for tool {tool_name!r}: " + "; ".join(parts)


def clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop pydantic's ``title`` noise so the schema costs fewer prompt tokens."""

    def walk(node: Any, in_props: bool = False) -> Any:
        if isinstance(node, dict):
            return {
                k: walk(v, in_props=(k == "properties"))
                for k, v in node.items()
                if not (k == "title" and not in_props and isinstance(v, str))
            }
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    out: dict[str, Any] = walk(schema)
    out.setdefault("type", "object")
    out.setdefault("properties", {})
    return out


class Tool(abc.ABC):
    """A tool the agent can call. Subclasses set ``name``, ``description`` and ``Args`` (a pydantic
    model with ``extra="forbid"`` so misspelt arguments are reported) and implement ``run``."""

    name: str = ""
    description: str = ""
    Args: type[BaseModel]

    def parameters(self) -> dict[str, Any]:
        """The JSON schema of the arguments, as shown to the model."""
        return clean_schema(self.Args.model_json_schema())

    def definition(self) -> ToolDef:
        return ToolDef(function=FunctionDef(name=self.name, description=self.description, parameters=self.parameters()))

    def parse(self, arguments: str | dict[str, Any] | None) -> Any:
        """Decode and validate the model's arguments; ``ToolArgumentError`` names what is wrong."""
        if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
            raw: Any = {}
        elif isinstance(arguments, str):
            try:
                raw = json.loads(arguments)
            except json.JSONDecodeError as e:
                raise ToolArgumentError(
                    f"invalid arguments for tool {self.name!r}: not valid JSON ({e.msg} at position {e.pos}); "
                    f"send a JSON object matching the tool's schema"
                ) from None
        else:
            raw = arguments
        if not isinstance(raw, dict):
            raise ToolArgumentError(
                f"invalid arguments for tool {self.name!r}: expected a JSON object, got {type(raw).__name__}"
            )
        try:
            return self.Args.model_validate(raw)
        except ValidationError as e:
            raise ToolArgumentError(format_validation_error(e, self.name)) from None

    @abc.abstractmethod
    async def run(self, args: Any, ctx: ToolContext) -> ToolResult | str:
        """Do the work. Return text for the model (or a ``ToolResult``); raise ``ToolError`` for a
        failure the model should see. Never block the event loop: use threads or subprocesses."""


class FunctionTool(Tool):
    """A tool made from a plain function by ``@tool``: arguments from its type hints, description
    from its docstring. A parameter annotated ``ToolContext`` receives the call's context."""

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None, description: str | None = None) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        doc = inspect.getdoc(fn) or ""
        self.description = description or doc.split("\n\n", 1)[0].strip() or self.name
        hints = get_type_hints(fn, include_extras=True)
        fields: dict[str, Any] = {}
        self._ctx_param: str | None = None
        for pname, param in inspect.signature(fn).parameters.items():
            ann = hints.get(pname, Any)
            if ann is ToolContext:
                self._ctx_param = pname
                continue
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise TypeError(f"@tool {self.name}: *args/**kwargs parameters are not supported")
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[pname] = (ann, default)
        self.Args = create_model(f"{self.name}_args", __config__=ConfigDict(extra="forbid"), **fields)
        self._is_async = inspect.iscoroutinefunction(fn)

    async def run(self, args: Any, ctx: ToolContext) -> ToolResult | str:
        kwargs = {k: getattr(args, k) for k in type(args).model_fields}
        if self._ctx_param:
            kwargs[self._ctx_param] = ctx
        if self._is_async:
            value = await self.fn(**kwargs)
        else:
            value = await asyncio.to_thread(self.fn, **kwargs)
        if isinstance(value, ToolResult | str):
            return value
        if isinstance(value, BaseModel):
            return value.model_dump_json()
        return json.dumps(value, default=str)


def tool(fn: Callable[..., Any] | None = None, *, name: str | None = None, description: str | None = None) -> Any:
    """Make a ``Tool`` of a function (sync functions run in a thread). ``@tool`` or
    ``@tool(name=..., description=...)``."""

    def wrap(f: Callable[..., Any]) -> FunctionTool:
        return FunctionTool(f, name=name, description=description)

    return wrap(fn) if fn is not None else wrap


def _truncate(text: str, limit: int = MAX_RESULT_CHARS) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... {len(text) - limit} more characters cut; read less at once]"


async def execute(
    t: Tool,
    arguments: str | dict[str, Any] | None,
    ctx: ToolContext,
    *,
    runner: Callable[[Callable[[], Awaitable[ToolResult]]], Awaitable[ToolResult]] | None = None,
) -> ToolResult:
    """Parse, validate and run one call; every failure becomes an error result naming the cause.

    ``runner`` wraps the actual run (the loop passes the meter, so the call is reserved and charged
    only when the arguments were valid). ``BudgetExhausted`` and cancellation propagate.
    """
    from conclave.core.ledger import BudgetExhausted
    from conclave.core.workspace import PathError, WorkspaceLimitError

    try:
        args = t.parse(arguments)
    except ToolArgumentError as e:
        return ToolResult(str(e), is_error=True, data={"error": "arguments"})

    async def call() -> ToolResult:
        t0 = time.perf_counter()
        try:
            value = await t.run(args, ctx)
        except (ToolError, PathError, WorkspaceLimitError, FileNotFoundError, IsADirectoryError) as e:
            return ToolResult(f"error: {e}", is_error=True, data={"error": type(e).__name__})
        except (BudgetExhausted, asyncio.CancelledError):
            raise
        except Exception as e:  # a bug in a tool must not end the run; the model sees what happened
            log.exception("tool %s failed", t.name)
            return ToolResult(f"error: tool {t.name!r} failed: {type(e).__name__}: {e}", is_error=True)
        result = value if isinstance(value, ToolResult) else ToolResult(str(value))
        result.content = _truncate(result.content)
        data = dict(result.data or {})
        data.setdefault("ms", int((time.perf_counter() - t0) * 1000))
        result.data = data
        return result

    return await (runner(call) if runner is not None else call())
