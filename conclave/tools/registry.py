"""Tool names and groups, and how a task's ``tools`` list becomes live tools.

A task names tools or groups (``["fs", "search"]``); ``resolve`` expands groups and rejects unknown
names with a message that lists what exists, so a typo is a 422 at submission, never a failed run.
``mcp:<server>`` names every tool of a configured MCP server, ``mcp:<server>/<tool>`` one of them;
those are discovered when the run opens its tools (``ToolRegistry.open``), which also starts stdio
servers and stops them when the run ends.

The process-wide registry (``default_registry``) holds the built-ins plus whatever the deployment
added with ``register_tool`` and ``configure``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from .base import Tool
from .settings import ToolSettings

__all__ = [
    "ToolRegistry",
    "check_tools",
    "configure",
    "default_registry",
    "register_tool",
]

ToolFactory = Callable[[ToolSettings], Tool]

BUILTIN_GROUPS: dict[str, list[str]] = {
    "fs": ["ls", "read", "write", "append", "edit", "grep"],
    "web": ["search", "fetch_url"],
}


def _builtin_factories() -> dict[str, ToolFactory]:
    from .ask_human import AskHuman
    from .fetch import FetchTool
    from .fs import FS_TOOLS
    from .python import PythonTool
    from .search import SearchTool

    out: dict[str, ToolFactory] = {}
    for cls in FS_TOOLS:
        out[cls.name] = lambda _s, c=cls: c()  # type: ignore[misc]
    out["search"] = SearchTool
    out["fetch_url"] = FetchTool
    out["python"] = PythonTool
    out["ask_human"] = lambda _s: AskHuman()
    return out


class ToolRegistry:
    """Known tools by name, groups of them, and the MCP servers tools may come from."""

    def __init__(self, settings: ToolSettings | None = None, *, builtins: bool = True) -> None:
        self.settings = settings or ToolSettings()
        self._factories: dict[str, ToolFactory] = _builtin_factories() if builtins else {}
        self._groups: dict[str, list[str]] = {k: list(v) for k, v in BUILTIN_GROUPS.items()} if builtins else {}

    # -- registration ---------------------------------------------------------------------------
    def register(self, t: Tool | ToolFactory, *, name: str | None = None, groups: Iterable[str] = ()) -> None:
        """Add a tool instance, or a factory called with the settings when a run opens it."""
        if isinstance(t, Tool):
            inst = t
            tool_name = name or t.name
            factory: ToolFactory = lambda _s: inst  # noqa: E731
        else:
            if name is None:
                raise ValueError("registering a tool factory needs name=")
            tool_name, factory = name, t
        if not tool_name or tool_name.startswith("mcp:") or tool_name in self._groups:
            raise ValueError(f"invalid tool name {tool_name!r} (empty, 'mcp:' prefix, or a group's name)")
        self._factories[tool_name] = factory
        for g in groups:
            members = self._groups.setdefault(g, [])
            if tool_name not in members:
                members.append(tool_name)

    def add_group(self, name: str, members: Iterable[str]) -> None:
        members = list(members)
        unknown = [m for m in members if m not in self._factories]
        if unknown:
            raise ValueError(f"group {name!r}: unknown tools {unknown}")
        self._groups[name] = members

    # -- lookup ---------------------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(self._factories)

    def groups(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self._groups.items()}

    def describe_known(self) -> str:
        groups = ", ".join(f"{g} ({', '.join(m)})" for g, m in sorted(self._groups.items()))
        servers = ", ".join(f"mcp:{s}" for s in sorted(self.settings.mcp_servers)) or "none configured"
        return f"tools: {', '.join(self.names())}; groups: {groups}; MCP servers: {servers}"

    def resolve(self, names: Iterable[str]) -> list[str]:
        """Expand groups; keep ``mcp:`` references; raise ``ValueError`` naming unknown entries."""
        out: list[str] = []
        unknown: list[str] = []
        for raw in names:
            n = raw.strip()
            if n.startswith("mcp:"):
                server = n[4:].split("/", 1)[0]
                if server not in self.settings.mcp_servers:
                    unknown.append(n)
                elif n not in out:
                    out.append(n)
                continue
            members = self._groups.get(n, [n] if n in self._factories else None)
            if members is None:
                unknown.append(n)
                continue
            out += [m for m in members if m not in out]
        if unknown:
            shown = ", ".join(repr(u) for u in unknown)
            err = ValueError(f"unknown tools {shown}; known {self.describe_known()}")
            err.field = "tools"  # type: ignore[attr-defined]
            raise err
        return out

    def check(self, names: Iterable[str]) -> None:
        self.resolve(names)

    def build(self, name: str) -> Tool:
        t = self._factories[name](self.settings)
        if t.name != name:
            t.name = name
        return t

    @contextlib.asynccontextmanager
    async def open(self, names: Iterable[str]) -> AsyncIterator[dict[str, Tool]]:
        """Live tools for a run, by name. MCP servers named are started (stdio) or connected
        (HTTP) for the duration, and their tools listed."""
        resolved = self.resolve(names)
        tools: dict[str, Tool] = {}
        try:
            async with contextlib.AsyncExitStack() as stack:
                mcp_refs: dict[str, list[str] | None] = {}
                for n in resolved:
                    if n.startswith("mcp:"):
                        server, _, one = n[4:].partition("/")
                        if one:
                            current = mcp_refs.get(server, [])
                            if current is not None:
                                mcp_refs[server] = [*current, one]
                        else:
                            mcp_refs[server] = None
                    else:
                        tools[n] = self.build(n)
                if mcp_refs:
                    from .mcp import open_mcp_tools

                    for server, only in mcp_refs.items():
                        found = await open_mcp_tools(stack, server, self.settings.mcp_servers[server], only=only)
                        for t in found:
                            if t.name in tools:
                                raise ValueError(f"MCP tool {t.name!r} of server {server!r} clashes with another tool")
                            tools[t.name] = t
                yield tools
        except BaseExceptionGroup as group:
            # The MCP client runs in an anyio task group, which wraps what passes through it.
            raise _single(group) from None


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception inside (nested) groups, or the group itself if there are several."""
    leaves: list[BaseException] = []

    def walk(g: BaseExceptionGroup[BaseException]) -> None:
        for e in g.exceptions:
            if isinstance(e, BaseExceptionGroup):
                walk(e)
            else:
                leaves.append(e)

    walk(group)
    return leaves[0] if len(leaves) == 1 else group


_default: ToolRegistry | None = None


def default_registry() -> ToolRegistry:
    """The process-wide registry the ``agent`` kind uses."""
    global _default
    if _default is None:
        _default = ToolRegistry()
    return _default


def configure(settings: ToolSettings | dict[str, Any]) -> ToolRegistry:
    """Set the tool settings of this process (a worker calls this at start-up); registered extra
    tools are kept."""
    reg = default_registry()
    reg.settings = settings if isinstance(settings, ToolSettings) else ToolSettings.model_validate(settings)
    return reg


def register_tool(t: Tool | ToolFactory, *, name: str | None = None, groups: Iterable[str] = ()) -> Tool | ToolFactory:
    """Add a tool to the process-wide registry (usable as a decorator on a ``Tool`` instance)."""
    default_registry().register(t, name=name, groups=groups)
    return t


def check_tools(names: Iterable[str]) -> None:
    """Raise ``ValueError`` naming unknown tools or groups (for validation at submission)."""
    default_registry().check(names)
