"""A run's file-system workspace: the agent's memory, persisted with the run's checkpoints.

Files are stored by the run store (one mapping per run, path → bytes) and are changed only inside a
step's commit, so a resumed run sees exactly the files of its last committed step, on any worker. Every
change is reported to the run's pending commit as a ``WorkspaceOp``. Paths are
confined to the workspace: relative POSIX paths, no ``..``, no absolute paths, no NUL or control
characters, bounded lengths. There are no links in a workspace at all (it is a mapping, not a
directory), so nothing can point out of it; the python sandbox, which does use a real directory,
refuses links when it syncs files back (``conclave.tools.python``).

Directories are implicit: a path is a directory when some file lives under it. A path can not be a
file and a directory at once, so a workspace always materialises as a real tree.
"""

from __future__ import annotations

import builtins
import io
import posixpath
import tarfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

__all__ = [
    "FS_RESEARCHER_LAYOUT",
    "Entry",
    "MAX_FILES",
    "MAX_FILE_BYTES",
    "MAX_WORKSPACE_BYTES",
    "PathError",
    "Workspace",
    "WorkspaceLimitError",
    "WorkspaceOp",
    "WorkspaceOpKind",
    "confine",
    "materialize_files",
    "workspace_tarball",
]

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_WORKSPACE_BYTES = 64 * 1024 * 1024
MAX_FILES = 10_000
MAX_PATH_CHARS = 512
MAX_NAME_BYTES = 255  # what every common file system allows for one path component


class WorkspaceOpKind(StrEnum):
    """What a step did to one workspace path; the values are what the commit script reads."""

    WRITE = "w"
    DELETE = "d"


@dataclass(frozen=True)
class WorkspaceOp:
    """One change to one path, committed with the step that made it (the last op per path wins)."""

    op: WorkspaceOpKind
    path: str
    content: bytes = b""


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


class WorkspaceLimitError(ValueError):
    """A write that would break a size limit (per file, per workspace, number of files)."""


def confine(path: str) -> str:
    """Normalise ``path`` to a workspace-relative POSIX path, or raise ``PathError`` saying why."""
    if not isinstance(path, str) or not path.strip():
        raise PathError("path must be a non-empty string")
    if "\x00" in path:
        raise PathError(f"path {path!r} contains a NUL character")
    if any(ord(c) < 32 for c in path):
        raise PathError(f"path {path!r} contains a control character")
    p = path.strip().replace("\\", "/")
    if p.startswith("/") or (len(p) > 1 and p[1] == ":"):
        raise PathError(f"path {path!r} is absolute; use a path relative to the workspace")
    if p.startswith("~"):
        raise PathError(f"path {path!r} starts with '~'; use a path relative to the workspace")
    norm = posixpath.normpath(p)
    if norm == ".." or norm.startswith("../"):
        raise PathError(f"path {path!r} leaves the workspace")
    if norm in (".", ""):
        raise PathError(f"path {path!r} names the workspace itself, not a file")
    if len(norm) > MAX_PATH_CHARS:
        raise PathError(f"path of {len(norm)} characters is longer than {MAX_PATH_CHARS}")
    for part in norm.split("/"):
        if len(part.encode()) > MAX_NAME_BYTES:
            raise PathError(f"path component {part[:40]!r}… is longer than {MAX_NAME_BYTES} bytes")
    return norm


@dataclass(frozen=True)
class Entry:
    """One line of a listing: a file with its size and line count, or a directory."""

    path: str
    is_dir: bool
    size: int = 0
    lines: int = 0
    files: int = 0  # for a directory: files below it


def _line_count(data: bytes) -> int:
    if not data:
        return 0
    return data.count(b"\n") + (0 if data.endswith(b"\n") else 1)


class Workspace:
    """The files of one run. ``on_change`` receives every write or delete; the run context routes
    it into the current step's commit."""

    def __init__(
        self,
        files: dict[str, bytes] | None = None,
        on_change: Callable[[WorkspaceOp], None] | None = None,
        *,
        max_file_bytes: int = MAX_FILE_BYTES,
        max_total_bytes: int = MAX_WORKSPACE_BYTES,
        max_files: int = MAX_FILES,
    ) -> None:
        self._files: dict[str, bytes] = dict(files or {})
        self._on_change = on_change
        self.max_file_bytes = max_file_bytes
        self.max_total_bytes = max_total_bytes
        self.max_files = max_files
        self._total = sum(len(v) for v in self._files.values())

    # -- reading --------------------------------------------------------------------------------
    def exists(self, path: str) -> bool:
        return confine(path) in self._files

    def is_dir(self, path: str) -> bool:
        pre = confine(path) + "/"
        return any(p.startswith(pre) for p in self._files)

    def read_bytes(self, path: str) -> bytes:
        p = confine(path)
        try:
            return self._files[p]
        except KeyError:
            if self.is_dir(p):
                raise IsADirectoryError(f"{p!r} is a directory; list it with ls") from None
            raise FileNotFoundError(f"no file {p!r} in the workspace") from None

    def read(self, path: str) -> str:
        return self.read_bytes(path).decode("utf-8", errors="replace")

    def list(self, prefix: str = "") -> list[str]:
        """Paths under ``prefix`` (a directory or a path start), sorted."""
        pre = confine(prefix).rstrip("/") + "/" if prefix.strip(" ./") else ""
        return sorted(p for p in self._files if p.startswith(pre))

    def entries(self, directory: str = "", *, recursive: bool = False) -> builtins.list[Entry]:
        """The files and directories directly in ``directory`` (all below it if ``recursive``),
        with sizes and line counts; directories first sorted by name. ``FileNotFoundError`` if the
        directory holds nothing."""
        base = confine(directory) if directory.strip(" ./") else ""
        if base and base in self._files:
            data = self._files[base]
            return [Entry(base, False, len(data), _line_count(data))]
        pre = base + "/" if base else ""
        dirs: dict[str, int] = {}
        files: builtins.list[Entry] = []
        for p, data in self._files.items():
            if not p.startswith(pre):
                continue
            rest = p[len(pre) :]
            if "/" in rest and not recursive:
                d = pre + rest.split("/", 1)[0]
                dirs[d] = dirs.get(d, 0) + 1
                continue
            if recursive:
                parts = rest.split("/")[:-1]
                for i in range(len(parts)):
                    d = pre + "/".join(parts[: i + 1])
                    dirs[d] = dirs.get(d, 0) + 1
            files.append(Entry(p, False, len(data), _line_count(data)))
        if base and not dirs and not files:
            raise FileNotFoundError(f"no file or directory {base!r} in the workspace")
        out = [Entry(d, True, files=n) for d, n in sorted(dirs.items())]
        return out + sorted(files, key=lambda e: e.path)

    def files(self) -> dict[str, bytes]:
        return dict(self._files)

    def total_bytes(self) -> int:
        return self._total

    # -- writing --------------------------------------------------------------------------------
    def _check_tree(self, p: str) -> None:
        parts = p.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent in self._files:
                raise PathError(f"cannot create {p!r}: {parent!r} is a file, not a directory")
        if p not in self._files and any(q.startswith(p + "/") for q in self._files):
            raise PathError(f"cannot write {p!r}: it is a directory")

    def write(self, path: str, content: str | bytes) -> str:
        p = confine(path)
        data = content.encode() if isinstance(content, str) else bytes(content)
        if len(data) > self.max_file_bytes:
            raise WorkspaceLimitError(
                f"{p}: {len(data)} bytes is more than the {self.max_file_bytes} bytes a file may hold"
            )
        old = self._files.get(p)
        if old is None:
            self._check_tree(p)
            if len(self._files) >= self.max_files:
                raise WorkspaceLimitError(f"the workspace already holds {self.max_files} files; delete some first")
        total = self._total - (len(old) if old is not None else 0) + len(data)
        if total > self.max_total_bytes:
            raise WorkspaceLimitError(
                f"{p}: writing {len(data)} bytes would bring the workspace to {total} bytes, more than its "
                f"limit of {self.max_total_bytes} bytes ({self._total} used)"
            )
        self._files[p] = data
        self._total = total
        if self._on_change:
            self._on_change(WorkspaceOp(WorkspaceOpKind.WRITE, p, data))
        return p

    def append(self, path: str, content: str | bytes) -> str:
        p = confine(path)
        extra = content.encode() if isinstance(content, str) else bytes(content)
        return self.write(p, self._files.get(p, b"") + extra)

    def delete(self, path: str) -> bool:
        p = confine(path)
        if p not in self._files:
            return False
        self._total -= len(self._files.pop(p))
        if self._on_change:
            self._on_change(WorkspaceOp(WorkspaceOpKind.DELETE, p))
        return True

    def init_layout(self, entries: Iterable[str] = FS_RESEARCHER_LAYOUT) -> None:
        """Create the files of a layout that do not exist yet (directories get a ``.keep``)."""
        for e in entries:
            path = e + ".keep" if e.endswith("/") else e
            if confine(path) not in self._files:
                self.write(path, "")

    def materialize(self, root: Path) -> builtins.list[Path]:
        """Write every file under ``root`` (for a sandbox or a download). Blocking: call it in a
        thread from async code."""
        return materialize_files(self._files, root)

    def tarball(self) -> bytes:
        return workspace_tarball(self._files)


def materialize_files(files: dict[str, bytes], root: Path) -> list[Path]:
    """Write ``files`` under ``root``, re-confining every path (the mapping may come from Redis)."""
    out = []
    root = root.resolve()
    for p, data in files.items():
        target = root / confine(p)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        out.append(target)
    return out


def workspace_tarball(files: dict[str, bytes], *, root: str = "workspace") -> bytes:
    """A gzip'd tar of ``files`` under ``root/``, regular files only, deterministic order. Paths are
    re-confined so a tampered hash cannot produce an archive that escapes when extracted."""
    buf = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for p in sorted(files):
            data = files[p]
            info = tarfile.TarInfo(f"{root}/{confine(p)}" if root else confine(p))
            info.size = len(data)
            info.mtime = now
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
