"""Tools an agent can call: the ``Tool`` base, the registry, and the built-ins (workspace files,
search, fetch_url, python in a sandbox, MCP servers)."""

from .base import FunctionTool, Tool, ToolArgumentError, ToolContext, ToolError, ToolResult, idempotency_key, tool
from .registry import ToolRegistry, check_tools, configure, default_registry, register_tool
from .settings import FetchSettings, McpServerSettings, PythonSettings, SearchSettings, ToolSettings

__all__ = [
    "FetchSettings",
    "FunctionTool",
    "McpServerSettings",
    "PythonSettings",
    "SearchSettings",
    "Tool",
    "ToolArgumentError",
    "ToolContext",
    "ToolError",
    "ToolRegistry",
    "ToolResult",
    "ToolSettings",
    "check_tools",
    "configure",
    "default_registry",
    "idempotency_key",
    "register_tool",
    "tool",
]
