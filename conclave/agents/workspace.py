"""A run's file-system workspace: the agent's memory, persisted with the run's checkpoints.

Files live in Redis (one hash per run, path → bytes) and are changed only inside a step's commit,
so a resumed run sees exactly the files of its last committed step, on any worker. Paths are
confined to the workspace: relative POSIX paths, no ``..``, no absolute paths, no NUL.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable
from pathlib import Path

from conclave.controller.store import WorkspaceOp

__all__ = ["FS_RESEARCHER_LAYOUT", "PathError", "Workspace", "confine"]

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_FILES = 10_000

#: The FS-Researcher layout every research run starts from.
FS_RESEARCHER_LAYOUT = (
    "index.md",
    "knowledge_base/",
    "knowledge_base/sources/",
    "report_outline.md",
    "report.md",
    "logs/",
)


class PathError(ValueError):
    """A path that would leave the workspace or is otherwise unusable."""


def confine(path: str) -> str:
    """Normalise ``path`` to a workspace-relative POSIX path, or raise ``PathError`` saying why."""
    if not isinstance(path, str) or not path.strip():
        raise PathError("path must be a non-empty string")
    if "\x00" in path:
        raise PathError(f"path {path!r} contains a NUL character")
    p = path.strip().replace("\\", "/")
    if p.startswith("/") or (len(p) > 1 and p[1] == ":"):
        raise PathError(f"path {path!r} is absolute; use a path relative to the workspace")
    norm = posixpath.normpath(p)
    if norm == ".." or norm.startswith("../"):
        raise PathError(f"path {path!r} leaves the workspace")
    if norm in (".", ""):
        raise PathError(f"path {path!r} names the workspace itself, not a file")
    if len(norm) > 512:
        raise PathError(f"path {path!r} is longer than 512 characters")
    return norm


class Workspace:
    """The files of one run. ``on_change`` receives every write or delete; the run context routes
    it into the current step's commit."""

    def __init__(
        self, files: dict[str, bytes] | None = None, on_change: Callable[[WorkspaceOp], None] | None = None
    ) -> None:
        self._files: dict[str, bytes] = dict(files or {})
        self._on_change = on_change

    # -- reading --------------------------------------------------------------------------------
    def exists(self, path: str) -> bool:
        return confine(path) in self._files

    def read_bytes(self, path: str) -> bytes:
        p = confine(path)
        try:
            return self._files[p]
        except KeyError:
            raise FileNotFoundError(f"no file {p!r} in the workspace") from None

    def read(self, path: str) -> str:
        return self.read_bytes(path).decode("utf-8", errors="replace")

    def list(self, prefix: str = "") -> list[str]:
        """Paths under ``prefix`` (a directory or a path start), sorted."""
        pre = confine(prefix).rstrip("/") + "/" if prefix.strip(" ./") else ""
        return sorted(p for p in self._files if p.startswith(pre))

    def files(self) -> dict[str, bytes]:
        return dict(self._files)

    def total_bytes(self) -> int:
        return sum(len(v) for v in self._files.values())

    # -- writing --------------------------------------------------------------------------------
    def write(self, path: str, content: str | bytes) -> str:
        p = confine(path)
        data = content.encode() if isinstance(content, str) else bytes(content)
        if len(data) > MAX_FILE_BYTES:
            raise PathError(f"{p}: {len(data)} bytes is more than the {MAX_FILE_BYTES} bytes a file may hold")
        if p not in self._files and len(self._files) >= MAX_FILES:
            raise PathError(f"the workspace already holds {MAX_FILES} files")
        self._files[p] = data
        if self._on_change:
            self._on_change(WorkspaceOp("w", p, data))
        return p

    def append(self, path: str, content: str) -> str:
        p = confine(path)
        return self.write(p, self._files.get(p, b"") + content.encode())

    def delete(self, path: str) -> bool:
        p = confine(path)
        if p not in self._files:
            return False
        del self._files[p]
        if self._on_change:
            self._on_change(WorkspaceOp("d", p))
        return True

    def init_layout(self, entries: Iterable[str] = FS_RESEARCHER_LAYOUT) -> None:
        """Create the files of a layout that do not exist yet (directories get a ``.keep``)."""
        for e in entries:
            path = e + ".keep" if e.endswith("/") else e
            if confine(path) not in self._files:
                self.write(path, "")

    def materialize(self, root: Path) -> list[Path]:
        """Write every file under ``root`` (for a sandbox or a download)."""
        out = []
        for p, data in self._files.items():
            target = root / p
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            out.append(target)
        return out
