"""Workspace confinement and limits, listings, the tarball, and reading a run's files from Redis."""

from __future__ import annotations

import io
import tarfile

import pytest

from conclave.core.workspace import (
    PathError,
    Workspace,
    WorkspaceLimitError,
    confine,
    workspace_tarball,
)


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("../x", "leaves the workspace"),
        ("a/../../x", "leaves the workspace"),
        ("..", "leaves the workspace"),
        ("/etc/passwd", "is absolute"),
        ("C:/x", "is absolute"),
        ("\\\\server\\share", "is absolute"),
        ("~/x", "starts with '~'"),
        ("a\x00b", "NUL"),
        ("a\nb", "control character"),
        ("", "non-empty"),
        (".", "the workspace itself"),
        ("a/" * 300, "longer than 512"),
        ("x" * 256, "longer than 255 bytes"),
    ],
)
def test_paths_that_escape_or_cannot_be_stored_are_refused(path: str, why: str) -> None:
    with pytest.raises(PathError, match=why):
        confine(path)


def test_paths_are_normalised() -> None:
    assert confine("./a//b/../c.md") == "a/c.md"
    assert confine("a\\b.txt") == "a/b.txt"


def test_size_limits_name_the_limit() -> None:
    ws = Workspace(max_file_bytes=100, max_total_bytes=150, max_files=3)
    with pytest.raises(WorkspaceLimitError, match="101 bytes is more than the 100 bytes a file may hold"):
        ws.write("big", b"x" * 101)
    ws.write("a", b"x" * 100)
    with pytest.raises(WorkspaceLimitError, match="more than its limit of 150 bytes \\(100 used\\)"):
        ws.write("b", b"x" * 51)
    ws.write("a", b"x" * 10)  # overwriting frees the old size
    ws.write("b", b"x" * 100)
    ws.write("c", b"")
    with pytest.raises(WorkspaceLimitError, match="already holds 3 files"):
        ws.write("d", b"")
    assert ws.total_bytes() == 110
    ws.delete("b")
    assert ws.total_bytes() == 10


def test_a_path_is_a_file_or_a_directory_never_both() -> None:
    ws = Workspace()
    ws.write("a/b.md", "x")
    with pytest.raises(PathError, match="it is a directory"):
        ws.write("a", "x")
    with pytest.raises(PathError, match="'a/b.md' is a file"):
        ws.write("a/b.md/c", "x")
    with pytest.raises(IsADirectoryError):
        ws.read("a")


def test_listing_with_sizes_and_line_counts() -> None:
    ws = Workspace({"index.md": b"one\ntwo\n", "kb/s/a.md": b"x", "kb/b.md": b"1\n2\n3"})
    top = ws.entries()
    assert [(e.path, e.is_dir, e.size, e.lines, e.files) for e in top] == [
        ("kb", True, 0, 0, 2),
        ("index.md", False, 8, 2, 0),
    ]
    rec = ws.entries("kb", recursive=True)
    assert [e.path for e in rec] == ["kb/s", "kb/b.md", "kb/s/a.md"]
    assert ws.entries("kb/b.md")[0].lines == 3
    with pytest.raises(FileNotFoundError):
        ws.entries("nope")


def test_tarball_holds_every_file_under_one_root() -> None:
    files = {"index.md": b"hi", "kb/sources/a.md": b"\x00\xffbinary"}
    data = workspace_tarball(files)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        names = tar.getnames()
        got = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    assert sorted(names) == ["workspace/index.md", "workspace/kb/sources/a.md"]
    assert got["workspace/kb/sources/a.md"] == b"\x00\xffbinary"
    with pytest.raises(PathError):
        workspace_tarball({"../evil": b"x"})


def test_changes_are_reported_for_the_step_commit() -> None:
    ops = []
    ws = Workspace(on_change=ops.append)
    ws.write("a", "1")
    ws.append("a", "2")
    ws.delete("a")
    assert [(o.op, o.path, o.content) for o in ops] == [("w", "a", b"1"), ("w", "a", b"12"), ("d", "a", b"")]
