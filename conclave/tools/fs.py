"""Workspace file tools: ``ls``, ``read``, ``write``, ``append``, ``edit``, ``grep``.

They work on the run's in-memory ``Workspace`` (the writes commit with the step that made them), so
they need no thread: every operation is a bounded dict lookup or a scan of at most the workspace's
size limit. Outputs are bounded so a large file cannot flood the context: ``read`` pages,
``grep`` stops at ``max_matches``.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .base import Tool, ToolContext, ToolError, ToolResult

__all__ = ["AppendTool", "EditTool", "GrepTool", "LsTool", "ReadTool", "WriteTool", "FS_TOOLS"]

_MAX_LINE_CHARS = 2_000
_MAX_GREP_BYTES = 8 * 1024 * 1024


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _size(n: int) -> str:
    return f"{n} B" if n < 10_000 else f"{n / 1024:.1f} KiB"


class LsArgs(_Args):
    path: str = Field(default="", max_length=512, description="Directory to list; empty for the workspace root.")
    recursive: bool = Field(default=False, description="List everything below the directory.")


class LsTool(Tool):
    name = "ls"
    description = "List files in the workspace with their sizes and line counts."
    Args = LsArgs

    async def run(self, args: LsArgs, ctx: ToolContext) -> ToolResult:
        entries = ctx.workspace.entries(args.path, recursive=args.recursive)
        if not entries:
            return ToolResult("the workspace is empty", data={"entries": 0})
        lines = []
        for e in entries[:500]:
            if e.is_dir:
                lines.append(f"{e.path}/  ({e.files} files)")
            else:
                lines.append(f"{e.path}  {_size(e.size)}, {e.lines} lines")
        if len(entries) > 500:
            lines.append(f"... {len(entries) - 500} more entries; list a subdirectory")
        return ToolResult("\n".join(lines), data={"entries": len(entries)})


class ReadArgs(_Args):
    path: str = Field(max_length=512, description="File to read.")
    offset: int = Field(default=1, ge=1, description="First line to show (1-based).")
    limit: int = Field(default=200, ge=1, le=2_000, description="Lines to show at most.")


class ReadTool(Tool):
    name = "read"
    description = "Read a workspace file with numbered lines, a page at a time."
    Args = ReadArgs

    async def run(self, args: ReadArgs, ctx: ToolContext) -> ToolResult:
        text = ctx.workspace.read(args.path)
        lines = text.splitlines()
        if not lines:
            return ToolResult(f"{args.path} is empty", data={"lines": 0})
        if args.offset > len(lines):
            raise ToolError(f"{args.path} has {len(lines)} lines; offset {args.offset} is past the end")
        end = min(len(lines), args.offset + args.limit - 1)
        width = len(str(end))
        out = []
        for i in range(args.offset, end + 1):
            line = lines[i - 1]
            if len(line) > _MAX_LINE_CHARS:
                line = line[:_MAX_LINE_CHARS] + " [line cut]"
            out.append(f"{i:>{width}}\t{line}")
        head = f"{args.path}: lines {args.offset}-{end} of {len(lines)}"
        if end < len(lines):
            head += f" (read on with offset={end + 1})"
        return ToolResult(head + "\n" + "\n".join(out), data={"lines": end - args.offset + 1})


class WriteArgs(_Args):
    path: str = Field(max_length=512, description="File to create or overwrite.")
    content: str = Field(description="The whole new content of the file.")


class WriteTool(Tool):
    name = "write"
    description = "Create or overwrite a workspace file."
    Args = WriteArgs

    async def run(self, args: WriteArgs, ctx: ToolContext) -> ToolResult:
        p = ctx.workspace.write(args.path, args.content)
        n = len(args.content.encode())
        return ToolResult(f"wrote {n} bytes ({len(args.content.splitlines())} lines) to {p}", data={"path": p})


class AppendArgs(_Args):
    path: str = Field(max_length=512, description="File to append to (created if missing).")
    content: str = Field(description="Text to add at the end.")


class AppendTool(Tool):
    name = "append"
    description = "Append text to a workspace file."
    Args = AppendArgs

    async def run(self, args: AppendArgs, ctx: ToolContext) -> ToolResult:
        p = ctx.workspace.append(args.path, args.content)
        total = len(ctx.workspace.read_bytes(p))
        return ToolResult(f"appended {len(args.content.encode())} bytes to {p} (now {total} bytes)", data={"path": p})


class EditArgs(_Args):
    path: str = Field(max_length=512, description="File to edit.")
    new: str = Field(description="Replacement text.")
    old: str | None = Field(default=None, description="Text to replace; must occur exactly once.")
    start_line: int | None = Field(default=None, ge=1, description="First line to replace (instead of old).")
    end_line: int | None = Field(default=None, ge=1, description="Last line to replace (inclusive).")

    @model_validator(mode="after")
    def _one_way(self) -> EditArgs:
        if (self.old is None) == (self.start_line is None):
            raise ValueError("give either old (a unique string) or start_line[/end_line], not both or neither")
        if self.old == "":
            raise ValueError("old must not be empty")
        if self.end_line is not None and self.start_line is not None and self.end_line < self.start_line:
            raise ValueError(f"end_line {self.end_line} is before start_line {self.start_line}")
        return self


class EditTool(Tool):
    name = "edit"
    description = "Edit a workspace file: replace a unique string, or a range of lines."
    Args = EditArgs

    async def run(self, args: EditArgs, ctx: ToolContext) -> ToolResult:
        text = ctx.workspace.read(args.path)
        if args.old is not None:
            n = text.count(args.old)
            if n != 1:
                where = "does not occur" if n == 0 else f"occurs {n} times"
                raise ToolError(f"{args.path}: the text to replace {where}; it must occur exactly once")
            new_text = text.replace(args.old, args.new, 1)
            what = "1 occurrence"
        else:
            assert args.start_line is not None
            lines = text.splitlines(keepends=True)
            start, end = args.start_line, args.end_line or args.start_line
            if start > len(lines) + 1 or end > len(lines):
                raise ToolError(f"{args.path} has {len(lines)} lines; lines {start}-{end} do not exist")
            repl = args.new if args.new.endswith("\n") or not args.new else args.new + "\n"
            new_text = "".join(lines[: start - 1]) + repl + "".join(lines[end:])
            what = f"lines {start}-{end}"
        p = ctx.workspace.write(args.path, new_text)
        return ToolResult(f"edited {p}: replaced {what}", data={"path": p})


class GrepArgs(_Args):
    pattern: str = Field(max_length=500, description="Python regular expression.")
    path: str = Field(default="", max_length=512, description="File or directory to search; empty for all.")
    ignore_case: bool = False
    max_matches: int = Field(default=50, ge=1, le=500)


class GrepTool(Tool):
    name = "grep"
    description = "Search workspace files for a regular expression; prints path:line: text."
    Args = GrepArgs

    async def run(self, args: GrepArgs, ctx: ToolContext) -> ToolResult:
        try:
            rx = re.compile(args.pattern, re.IGNORECASE if args.ignore_case else 0)
        except re.error as e:
            raise ToolError(f"invalid regular expression {args.pattern!r}: {e}") from None
        ws = ctx.workspace
        if args.path.strip(" ./") and ws.exists(args.path):
            paths = [args.path]
        else:
            paths = ws.list(args.path)
            if args.path.strip(" ./") and not paths:
                raise ToolError(f"no file or directory {args.path!r} in the workspace")
        out: list[str] = []
        scanned = 0
        for p in paths:
            data = ws.read_bytes(p)
            scanned += len(data)
            if scanned > _MAX_GREP_BYTES:
                out.append(f"[stopped after {_MAX_GREP_BYTES} bytes; narrow the path]")
                break
            for i, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
                if rx.search(line[:_MAX_LINE_CHARS]):
                    out.append(f"{p}:{i}: {line[:300]}")
                    if len(out) >= args.max_matches:
                        out.append(f"[{args.max_matches} matches shown; there may be more]")
                        return ToolResult("\n".join(out), data={"matches": args.max_matches})
        if not out:
            return ToolResult(f"no match for {args.pattern!r}", data={"matches": 0})
        return ToolResult("\n".join(out), data={"matches": len(out)})


FS_TOOLS: tuple[type[Tool], ...] = (LsTool, ReadTool, WriteTool, AppendTool, EditTool, GrepTool)
