"""Summaries that stand in for old tool results when a conversation nears the context window.

The full result moves into the workspace (the FS-Researcher idea: the file system is the memory,
the context is a window on it); the context keeps a pointer and a short extract. The extract is
taken from the text, not written by a model: it costs nothing, cannot invent anything, and is the
same on every replay of the run.
"""

from __future__ import annotations

__all__ = ["extract", "pointer"]


def extract(text: str, max_chars: int = 240) -> str:
    """The first non-empty lines of ``text``, up to ``max_chars`` characters."""
    out: list[str] = []
    used = 0
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if used + len(line) > max_chars:
            room = max_chars - used
            if room > 20:
                out.append(line[:room] + "…")
            break
        out.append(line)
        used += len(line) + 3
    return " / ".join(out)


def pointer(path: str, text: str, *, tool: str, max_chars: int = 240) -> str:
    """What replaces a tool result in the context."""
    lines = len(text.splitlines())
    return (
        f"[{tool} result moved to the workspace file {path} ({lines} lines, {len(text)} characters) to save "
        f"context; read it again if you need it. It began: {extract(text, max_chars)}]"
    )
