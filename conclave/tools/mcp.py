"""Tools from MCP servers, with the ``mcp`` package's ``Client``.

A server is configured by name in ``tools.mcp_servers``: either a command Conclave starts and talks to
over stdio, or a streamable-HTTP URL. A task asks for ``mcp:<server>`` (all its tools) or
``mcp:<server>/<tool>``. When the run opens its tools the server is started or connected, its tools
are listed, and each becomes a ``Tool`` named ``<server>__<tool>`` whose schema is the server's
``inputSchema``; arguments are validated against it (JSON Schema) before the call, so the model gets
the same precise errors as for a built-in tool. The server is stopped when the run's loop ends.

Every call carries the run's idempotency key in ``_meta`` (``conclave/idempotency_key``): a server
with outside side effects can use it to refuse a call it has already applied, which is what makes a
resumed run safe with such a server (a call that committed is not sent again at all).
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

import jsonschema
import mcp_types
from mcp import Client, StdioServerParameters
from pydantic import BaseModel, ConfigDict

from .base import Tool, ToolArgumentError, ToolContext, ToolError, ToolResult
from .settings import McpServerSettings

__all__ = ["IDEMPOTENCY_META_KEY", "McpTool", "open_mcp_tools"]

IDEMPOTENCY_META_KEY = "conclave/idempotency_key"


class _AnyArgs(BaseModel):
    model_config = ConfigDict(extra="allow")


def _tool_name(server: str, remote: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_\-]", "_", f"{server}__{remote}")
    return name[:64]


class McpTool(Tool):
    """One tool of a connected MCP server."""

    Args = _AnyArgs

    def __init__(self, client: Client, server: str, remote: mcp_types.Tool, timeout_s: float) -> None:
        self.client = client
        self.server = server
        self.remote_name = remote.name
        self.name = _tool_name(server, remote.name)
        self.description = (remote.description or f"{remote.name} (MCP server {server})").strip()[:1024]
        schema = dict(remote.input_schema or {})
        schema.setdefault("type", "object")
        schema.setdefault("properties", {})
        self.schema = schema
        self.validator = jsonschema.Draft202012Validator(schema)
        self.timeout_s = timeout_s

    def parameters(self) -> dict[str, Any]:
        return self.schema

    def parse(self, arguments: str | dict[str, Any] | None) -> Any:
        if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
            raw: Any = {}
        elif isinstance(arguments, str):
            try:
                raw = json.loads(arguments)
            except json.JSONDecodeError as e:
                raise ToolArgumentError(
                    f"invalid arguments for tool {self.name!r}: not valid JSON ({e.msg} at position {e.pos})"
                ) from None
        else:
            raw = arguments
        if not isinstance(raw, dict):
            raise ToolArgumentError(f"invalid arguments for tool {self.name!r}: expected a JSON object")
        errors = sorted(self.validator.iter_errors(raw), key=lambda e: list(e.path))
        if errors:
            parts = []
            for err in errors[:5]:
                loc = ".".join(str(p) for p in err.path) or "(arguments)"
                parts.append(f"{loc}: {err.message}")
            raise ToolArgumentError(f"invalid arguments for tool {self.name!r}: " + "; ".join(parts))
        return raw

    async def run(self, args: Any, ctx: ToolContext) -> ToolResult:
        meta = mcp_types.RequestParamsMeta(**{IDEMPOTENCY_META_KEY: ctx.idempotency_key})  # type: ignore[misc]
        try:
            res = await self.client.call_tool(
                self.remote_name, dict(args), read_timeout_seconds=self.timeout_s, meta=meta
            )
        except Exception as e:  # the server failed or went away; the model should know
            raise ToolError(f"MCP server {self.server!r} failed on {self.remote_name}: {type(e).__name__}: {e}") from e
        parts: list[str] = []
        for block in res.content:
            if isinstance(block, mcp_types.TextContent):
                parts.append(block.text)
            else:
                parts.append(f"[{getattr(block, 'type', 'content')} content omitted]")
        if not parts and res.structured_content is not None:
            parts.append(json.dumps(res.structured_content))
        return ToolResult(
            "\n".join(parts) or "(no content)",
            is_error=bool(res.is_error),
            data={"server": self.server, "tool": self.remote_name},
        )


async def open_mcp_tools(
    stack: contextlib.AsyncExitStack, server: str, cfg: McpServerSettings, *, only: list[str] | None = None
) -> list[McpTool]:
    """Start or connect ``server`` (closed with ``stack``) and return its tools."""
    target: StdioServerParameters | str
    if cfg.command is not None:
        target = StdioServerParameters(command=cfg.command, args=list(cfg.args), env=dict(cfg.env) or None, cwd=cfg.cwd)
    else:
        assert cfg.url is not None
        target = cfg.url
    client = Client(target, read_timeout_seconds=cfg.timeout_s)
    try:
        await stack.enter_async_context(client)
    except Exception as e:
        raise ToolError(f"could not start MCP server {server!r}: {type(e).__name__}: {e}") from e
    remote: list[mcp_types.Tool] = []
    cursor: str | None = None
    for _ in range(100):
        page = await client.list_tools(cursor=cursor)
        remote += page.tools
        cursor = page.next_cursor
        if not cursor:
            break
    wanted = set(only or []) | set(cfg.tools or [])
    available = [t.name for t in remote]
    missing = sorted(w for w in wanted if w not in available)
    if missing:
        raise ToolError(f"MCP server {server!r} has no tool {', '.join(missing)}; it has {', '.join(available)}")
    chosen = [t for t in remote if not wanted or t.name in wanted]
    if only and cfg.tools:
        chosen = [t for t in chosen if t.name in only and t.name in cfg.tools]
    return [McpTool(client, server, t, cfg.timeout_s) for t in chosen]
