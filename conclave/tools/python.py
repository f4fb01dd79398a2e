"""``python``: run code in a sandboxed subprocess over a copy of the workspace.

How it is confined, and why each piece is there:

* The workspace is materialised into a fresh temporary directory (the code's working directory);
  after the run, regular files are synced back into the workspace, so the changes commit with the
  step. Links and special files the code creates are not synced back (nothing can point out of the
  workspace), and the workspace's size limits apply to what comes back.
* No network: the process runs in a new network namespace (``unshare --net``; its loopback is
  down, so not even 127.0.0.1 is reachable) and, where possible, a new PID namespace, so every
  process the code starts dies with it. Where the machine cannot make a network namespace, the
  tool refuses to run unless ``tools.python.allow_network`` says otherwise.
* Limits by ``setrlimit`` in the child: CPU seconds, address space (memory), file size, processes
  (forks beyond the limit fail with EAGAIN), no core files; plus a wall-clock limit and an output
  cap enforced from here by killing the process group.
* A worker running as root runs the code as an unprivileged user (``nobody``), so the process
  limit applies and the code cannot touch the worker's files. The environment is minimal: no
  inherited variables, so no credentials leak into the code.

The result is the exit status, stdout and stderr (each bounded) and the files changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from conclave.core.workspace import PathError, WorkspaceLimitError, confine

from .base import Tool, ToolContext, ToolError, ToolResult
from .settings import PythonSettings, ToolSettings

__all__ = ["Isolation", "PythonArgs", "PythonTool", "probe_isolation"]

# Runs as the namespace's first process: forks the user code with limits applied, waits for it,
# reports a signal death on stderr and exits with its status (so every process the code left
# behind dies with the namespace).
_LAUNCHER = r"""
import os, resource, signal, sys
cpu, mem, fsize, nproc, uid, gid = (int(x) for x in sys.argv[1:7])
code = sys.argv[7]
pid = os.fork()
if pid == 0:
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        if uid >= 0:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        os.execv(sys.executable, [sys.executable, "-I", code])
    except BaseException as e:
        os.write(2, ("conclave-sandbox: could not start the code: %s\n" % e).encode())
        os._exit(127)
while True:
    try:
        _, status = os.waitpid(pid, 0)
        break
    except InterruptedError:
        continue
if os.WIFSIGNALED(status):
    sig = os.WTERMSIG(status)
    os.write(2, ("\nconclave-sandbox: killed by signal %d (%s)\n" % (sig, signal.Signals(sig).name)).encode())
    os._exit(128 + sig)
os._exit(os.WEXITSTATUS(status))
"""


@dataclass(frozen=True)
class Isolation:
    """How the sandbox is cut off from the network on this machine."""

    prefix: tuple[str, ...]  # command prefix, empty = no isolation
    network: bool  # True = the code has no network
    pid_namespace: bool
    detail: str


_isolation: Isolation | None = None
_isolation_lock = asyncio.Lock()


async def _try(cmd: list[str]) -> tuple[bool, str]:
    try:
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
    except OSError as e:
        return False, str(e)
    _, err = await proc.communicate()
    return proc.returncode == 0, err.decode(errors="replace").strip()


async def probe_isolation() -> Isolation:
    """Find, once per process, the strongest isolation this machine allows: network + PID
    namespaces, network only, the same inside a user namespace (unprivileged), or none."""
    global _isolation
    async with _isolation_lock:
        if _isolation is not None:
            return _isolation
        unshare = shutil.which("unshare")
        if unshare is None:
            _isolation = Isolation((), False, False, "the unshare command is not installed")
            return _isolation
        reasons = []
        for flags, pidns in (
            (["--net", "--pid", "--fork", "--kill-child"], True),
            (["--net"], False),
            (["--user", "--map-root-user", "--net", "--pid", "--fork", "--kill-child"], True),
            (["--user", "--map-root-user", "--net"], False),
        ):
            ok, err = await _try([unshare, *flags, "true"])
            if ok:
                _isolation = Isolation((unshare, *flags, "--"), True, pidns, f"unshare {' '.join(flags)}")
                return _isolation
            reasons.append(err or "failed")
        _isolation = Isolation((), False, False, f"cannot create a network namespace ({reasons[-1]})")
        return _isolation


class PythonArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=200_000, description="Python source to run.")
    timeout_s: float | None = Field(default=None, gt=0, description="Wall-clock limit (capped by the settings).")


def _sandbox_ids(cfg: PythonSettings, iso: Isolation) -> tuple[int, int]:
    if os.geteuid() != 0 or not cfg.sandbox_user or "--user" in iso.prefix:
        return -1, -1
    try:
        pw = pwd.getpwnam(cfg.sandbox_user)
    except KeyError:
        raise ToolError(f"python sandbox: no user {cfg.sandbox_user!r} on this machine") from None
    return pw.pw_uid, pw.pw_gid


def _usable_by(path: Path, uid: int, gid: int) -> bool:
    """Whether ``uid`` can reach and read ``path`` (every directory above it searchable)."""

    def allowed(st: os.stat_result, bits: int) -> bool:
        if st.st_uid == uid:
            return st.st_mode & (bits << 6) == bits << 6
        if st.st_gid == gid:
            return st.st_mode & (bits << 3) == bits << 3
        return st.st_mode & bits == bits

    try:
        real = path.resolve()
        for parent in reversed(real.parents):
            if not allowed(parent.stat(), 0o1):
                return False
        return allowed(real.stat(), 0o5 if real.is_file() else 0o5)
    except OSError:
        return False


def _interpreter(cfg: PythonSettings, uid: int, gid: int) -> tuple[str, str]:
    """(interpreter, note). The worker's own Python when the sandbox user can run it (its binary and
    its standard library), else the system ``python3``; an operator can name one explicitly."""
    if cfg.python:
        return cfg.python, ""
    own = Path(sys.executable)
    if uid < 0:
        return str(own), ""
    stdlib = Path(os.__file__).parent
    if _usable_by(own, uid, gid) and _usable_by(stdlib, uid, gid):
        return str(own), ""
    system = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    if system and _usable_by(Path(system), uid, gid):
        return system, f"note: ran with {system} (the worker's Python is not readable by the sandbox user)"
    raise ToolError(
        f"python sandbox: the sandbox user cannot run {own}; set tools.python.python to an interpreter it can run"
    )


def _tasks_of(uid: int) -> int:
    """Processes and threads owned by ``uid`` now (RLIMIT_NPROC counts them all)."""
    n = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status") as f:
                uid_line = threads = None
                for line in f:
                    if line.startswith("Uid:"):
                        uid_line = line
                    elif line.startswith("Threads:"):
                        threads = line
                        break
            if uid_line and int(uid_line.split()[1]) == uid:
                n += int(threads.split()[1]) if threads else 1
        except (OSError, ValueError, IndexError):
            continue
    return n


def _prepare(root: Path, files: dict[str, bytes], code: str, uid: int, gid: int) -> Path:
    ws = root / "ws"
    ws.mkdir()
    for p, data in files.items():
        target = ws / confine(p)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    script = root / "main.py"
    script.write_text(code)
    if uid >= 0:
        for dirpath, dirnames, filenames in os.walk(root):
            os.chown(dirpath, uid, gid)
            for name in dirnames + filenames:
                os.chown(os.path.join(dirpath, name), uid, gid)
    return ws


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


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _show(data: bytes, cap: int, over: bool) -> str:
    text = data.decode("utf-8", errors="replace")
    if over:
        text += f"\n[output cut at {cap} bytes]"
    return text


class PythonTool(Tool):
    name = "python"
    description = (
        "Run Python code in a sandbox whose working directory is a copy of the workspace; files it "
        "writes there are saved back. No network. Returns exit status, stdout and stderr."
    )
    Args = PythonArgs

    def __init__(self, settings: ToolSettings | None = None) -> None:
        self.cfg = (settings or ToolSettings()).python

    async def run(self, args: PythonArgs, ctx: ToolContext) -> ToolResult:
        cfg = self.cfg
        if not cfg.enabled:
            raise ToolError("the python tool is disabled on this deployment (tools.python.enabled = false)")
        iso = await probe_isolation()
        if not iso.network and not cfg.allow_network:
            raise ToolError(
                f"the python tool cannot run here: {iso.detail}, so the code would have network access; "
                "an operator may allow that with tools.python.allow_network = true"
            )
        uid, gid = _sandbox_ids(cfg, iso)
        files = ctx.workspace.files()
        root = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="conclave-py-"))
        try:
            ws = await asyncio.to_thread(_prepare, root, files, args.code, uid, gid)
            base = await asyncio.to_thread(_tasks_of, uid if uid >= 0 else os.getuid())
            nproc = base + cfg.max_processes
            wall = min(args.timeout_s or cfg.wall_seconds, cfg.wall_seconds)
            exe, exe_note = await asyncio.to_thread(_interpreter, cfg, uid, gid)
            cmd = [
                *iso.prefix,
                exe,
                "-I",
                "-c",
                _LAUNCHER,
                str(cfg.cpu_seconds),
                str(cfg.memory_mb * 1024 * 1024),
                str(cfg.max_file_mb * 1024 * 1024),
                str(nproc),
                str(uid),
                str(gid),
                str(root / "main.py"),
            ]
            env = {
                "PATH": "/usr/local/bin:/usr/bin:/bin",
                "HOME": str(ws),
                "LANG": "C.UTF-8",
                "PYTHONDONTWRITEBYTECODE": "1",
                "PYTHONUNBUFFERED": "1",
                "MPLBACKEND": "Agg",
            }
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                cwd=str(ws),
                env=env,
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
                    _kill_group(proc.pid)
                try:
                    code = await asyncio.wait_for(proc.wait(), timeout=max(0.1, deadline - loop.time()))
                except TimeoutError:  # it closed its pipes but kept running
                    timed_out = True
                    _kill_group(proc.pid)
                    code = await proc.wait()
            finally:
                overflow.cancel()
                readers.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await readers
                _kill_group(proc.pid)  # processes the code left behind
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            synced = await asyncio.to_thread(_collect, ws, files, ctx.workspace.max_file_bytes, ctx.workspace.max_files)
        finally:
            await asyncio.to_thread(shutil.rmtree, root, True)
        overflowed = over_out.is_set() or over_err.is_set()
        result = self._result(code, bytes(out), bytes(err), overflowed, timed_out, wall, synced, ctx)
        if exe_note:
            result.content += "\n" + exe_note
        return result

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
