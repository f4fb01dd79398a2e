"""``python``: run code in a bubblewrap sandbox over a copy of the workspace.

How it is confined, and why each piece is there:

* The code runs under bubblewrap (``bwrap``) in new mount, PID, IPC, UTS and network namespaces.
  Its root file system is built from nothing: ``/usr`` (and the ``/lib``, ``/bin`` links), the
  dynamic loader's cache, the interpreter's own prefix and virtualenv, each mounted read-only at
  its usual path; a fresh ``/proc`` that shows only the sandbox's processes; a private ``/dev``;
  ``/tmp`` as a small tmpfs. The worker's files — its config with the Redis password, its home,
  its source tree — are not in that tree at all, so there is nothing to read, whatever the file
  permissions. The one writable mount is the workspace copy, at ``/workspace``.
* No network: a new network namespace holds only its own loopback, so not even the worker's
  127.0.0.1 services are reachable.
* A worker running as root runs bubblewrap directly (no user namespace) with every capability
  dropped but the two the launcher needs to become the unprivileged ``sandbox_user`` (``nobody``)
  before the code starts; a non-root worker's bubblewrap makes a user namespace and the code keeps
  the worker's uid, seeing none of the worker's files.
* Limits by ``setrlimit`` in the child: CPU seconds, address space (memory), file size, processes
  (forks beyond the limit fail with EAGAIN), no core files; plus a wall-clock limit and an output
  cap enforced from here by killing the process tree (bubblewrap dies, and with it the PID
  namespace and everything in it). The environment is minimal: nothing is inherited.
* Where bubblewrap cannot run (not installed, or user namespaces disabled for a non-root worker),
  the tool refuses to start, saying why. It never falls back to a weaker sandbox.

The workspace is materialised into a fresh temporary directory; after the run, regular files are
synced back into the workspace, so the changes commit with the step. Links and special files the
code creates are not synced back (nothing can point out of the workspace), and the workspace's size
limits apply to what comes back. The result is the exit status, stdout and stderr (each bounded)
and the files changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from conclave.core.workspace import PathError, WorkspaceLimitError, confine

from .base import Tool, ToolContext, ToolError, ToolResult
from .sandbox import (
    WORKSPACE,
    Sandbox,
    SandboxUnavailable,
    kill_group,
    limits,
    prepare_root,
    probe_sandbox,
    sandbox_command,
    sandbox_ids,
    tasks_of,
)
from .settings import ToolSettings

__all__ = ["PythonArgs", "PythonTool", "Sandbox", "SandboxUnavailable", "probe_sandbox", "sandbox_command"]


class PythonArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=200_000, description="Python source to run.")
    timeout_s: float | None = Field(default=None, gt=0, description="Wall-clock limit (capped by the settings).")


@dataclass
class _Synced:
    writes: dict[str, bytes]
    deletes: list[str]
    skipped: list[str]


def _collect(ws: Path, before: dict[str, bytes], max_file: int, max_files: int) -> _Synced:
    """Regular files under ``ws`` that differ from ``before``; links and special files skipped."""
    writes: dict[str, bytes] = {}
    skipped: list[str] = []
    seen: set[str] = set()
    count = 0
    for dirpath, dirnames, filenames in os.walk(ws, followlinks=False):
        for d in list(dirnames):
            full = os.path.join(dirpath, d)
            if os.path.islink(full):
                skipped.append(f"{os.path.relpath(full, ws)} (a link)")
                dirnames.remove(d)
        for name in filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, ws).replace(os.sep, "/")
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                skipped.append(f"{rel} (a link)")
                continue
            if not stat.S_ISREG(st.st_mode):
                skipped.append(f"{rel} (not a regular file)")
                continue
            count += 1
            if count > max_files:
                skipped.append(f"{rel} and more (over {max_files} files)")
                return _Synced(writes, [p for p in before if p not in seen and p not in writes], skipped)
            try:
                p = confine(rel)
            except PathError as e:
                skipped.append(f"{rel} ({e})")
                continue
            if st.st_size > max_file:
                skipped.append(f"{p} ({st.st_size} bytes, over the {max_file}-byte file limit)")
                seen.add(p)
                continue
            seen.add(p)
            fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as f:
                data = f.read(max_file + 1)
            if before.get(p) != data:
                writes[p] = data
    deletes = [p for p in before if p not in seen]
    return _Synced(writes, deletes, skipped)


async def _read_capped(stream: asyncio.StreamReader, buf: bytearray, cap: int, over: asyncio.Event) -> None:
    """Keep the first ``cap`` bytes; past that, signal ``over`` and drain the pipe to its end (a
    pipe left unread would keep the process, and asyncio's wait for it, from finishing)."""
    while chunk := await stream.read(65536):
        room = cap - len(buf)
        if room > 0:
            buf += chunk[:room]
        if len(chunk) > room:
            over.set()


def _show(data: bytes, cap: int, over: bool) -> str:
    text = data.decode("utf-8", errors="replace")
    if over:
        text += f"\n[output cut at {cap} bytes]"
    return text


class PythonTool(Tool):
    name = "python"
    description = (
        "Run Python code in a sandbox whose working directory is a copy of the workspace; files it "
        "writes there are saved back. No network; nothing outside the workspace is writable. "
        "Returns exit status, stdout and stderr."
    )
    Args = PythonArgs

    def __init__(self, settings: ToolSettings | None = None) -> None:
        self.cfg = (settings or ToolSettings()).python

    async def run(self, args: PythonArgs, ctx: ToolContext) -> ToolResult:
        cfg = self.cfg
        if not cfg.enabled:
            raise ToolError("the python tool is disabled on this deployment (tools.python.enabled = false)")
        sb = await probe_sandbox(cfg)  # SandboxUnavailable (a ToolError) when it cannot be built
        uid, gid = sandbox_ids(cfg, sb)
        files = ctx.workspace.files()
        root = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="conclave-py-"))
        try:
            ws = await asyncio.to_thread(prepare_root, root, files, args.code, uid, gid)
            base = await asyncio.to_thread(tasks_of, uid if uid >= 0 else os.getuid())
            nproc = base + cfg.max_processes
            wall = min(args.timeout_s or cfg.wall_seconds, cfg.wall_seconds)
            env = {
                "PATH": "/usr/local/bin:/usr/bin:/bin",
                "HOME": WORKSPACE,
                "LANG": "C.UTF-8",
                "PYTHONDONTWRITEBYTECODE": "1",
                "PYTHONUNBUFFERED": "1",
                "MPLBACKEND": "Agg",
                "TMPDIR": "/tmp",
            }
            cmd = sandbox_command(sb, cfg, root, env, limits(cfg, nproc, uid, gid))
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                cwd=str(root),
                env={"PATH": "/usr/bin:/bin"},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
            out, err = bytearray(), bytearray()
            cap = cfg.max_output_bytes // 2
            over_out, over_err = asyncio.Event(), asyncio.Event()
            assert proc.stdout is not None and proc.stderr is not None
            readers: asyncio.Future[Any] = asyncio.ensure_future(
                asyncio.gather(
                    _read_capped(proc.stdout, out, cap, over_out), _read_capped(proc.stderr, err, cap, over_err)
                )
            )
            overflow: asyncio.Future[Any] = asyncio.ensure_future(self._first_overflow(over_out, over_err))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + wall
            timed_out = False
            try:
                done, _ = await asyncio.wait({readers, overflow}, timeout=wall, return_when=asyncio.FIRST_COMPLETED)
                timed_out = not done
                if readers not in done:  # out of time or of output: stop everything it started
                    kill_group(proc.pid)
                try:
                    code = await asyncio.wait_for(proc.wait(), timeout=max(0.1, deadline - loop.time()))
                except TimeoutError:  # it closed its pipes but kept running
                    timed_out = True
                    kill_group(proc.pid)
                    code = await proc.wait()
            finally:
                overflow.cancel()
                readers.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await readers
                kill_group(proc.pid)  # processes the code left behind
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            synced = await asyncio.to_thread(_collect, ws, files, ctx.workspace.max_file_bytes, ctx.workspace.max_files)
        finally:
            await asyncio.to_thread(shutil.rmtree, root, True)
        overflowed = over_out.is_set() or over_err.is_set()
        return self._result(code, bytes(out), bytes(err), overflowed, timed_out, wall, synced, ctx)

    @staticmethod
    async def _first_overflow(a: asyncio.Event, b: asyncio.Event) -> None:
        wa, wb = asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())
        try:
            await asyncio.wait({wa, wb}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            wa.cancel()
            wb.cancel()

    def _result(
        self,
        code: int,
        out: bytes,
        err: bytes,
        overflow: bool,
        timed_out: bool,
        wall: float,
        synced: _Synced,
        ctx: ToolContext,
    ) -> ToolResult:
        cfg = self.cfg
        notes: list[str] = []
        changed: list[str] = []
        for p, content in synced.writes.items():
            try:
                ctx.workspace.write(p, content)
                changed.append(f"wrote {p} ({len(content)} bytes)")
            except (PathError, WorkspaceLimitError) as e:
                notes.append(f"not saved: {e}")
        for p in synced.deletes:
            ctx.workspace.delete(p)
            changed.append(f"deleted {p}")
        notes += [f"not saved: {s}" for s in synced.skipped]
        if timed_out:
            status = f"stopped: the wall-clock limit of {wall:g} s was reached"
        elif overflow:
            status = f"stopped: the output passed the {cfg.max_output_bytes}-byte limit"
        elif code == 128 + signal.SIGXCPU:
            status = f"killed: the CPU-time limit of {cfg.cpu_seconds} s was reached (exit status {code})"
        elif code == 128 + signal.SIGKILL:
            status = f"killed (SIGKILL): the CPU-time or memory limit was reached (exit status {code})"
        elif code > 128:
            status = f"killed by signal {code - 128} (exit status {code})"
        else:
            status = f"exit status {code}"
        if b"MemoryError" in err:
            status += f"; out of memory (the limit is {cfg.memory_mb} MiB)"
        parts = [status]
        if out:
            parts.append("--- stdout ---\n" + _show(out, cfg.max_output_bytes // 2, False))
        if err:
            parts.append("--- stderr ---\n" + _show(err, cfg.max_output_bytes // 2, False))
        if changed:
            parts.append("--- workspace ---\n" + "\n".join(changed))
        if notes:
            parts.append("--- notes ---\n" + "\n".join(notes))
        data: dict[str, Any] = {
            "exit_status": code,
            "timed_out": timed_out,
            "output_limit": overflow,
            "changed": sorted(synced.writes),
            "deleted": synced.deletes,
        }
        return ToolResult("\n".join(parts), is_error=code != 0 or timed_out or overflow, data=data)
