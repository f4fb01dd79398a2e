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

__all__ = ["PythonArgs", "PythonTool", "Sandbox", "SandboxUnavailable", "probe_sandbox", "sandbox_command"]

#: Where the sandboxed code finds its workspace copy (its working directory) and its script.
WORKSPACE = "/workspace"
SCRIPT = "/sandbox/main.py"

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


class SandboxUnavailable(ToolError):
    """bubblewrap cannot run here; the message says why and what to do."""


@dataclass(frozen=True)
class Sandbox:
    """A bubblewrap that was seen to work on this machine, for this worker."""

    bwrap: str  # absolute path of the binary
    privileged: bool  # the worker is root: no user namespace, the launcher drops to the sandbox user
    interpreter: str
    ro_paths: tuple[str, ...]  # host paths mounted read-only at the same place


_probed: dict[tuple[Any, ...], Sandbox | str] = {}
_probe_lock = asyncio.Lock()


def _interpreter_paths(exe: str, custom: bool) -> list[str]:
    """Host folders the interpreter needs besides ``/usr``: its prefix (where its standard library
    is) and the virtualenv it belongs to, found from the running interpreter, or from the binary's
    real location for an interpreter named in the settings."""
    if custom:
        real = Path(os.path.realpath(exe))
        return [str(Path(exe).parent.parent), str(real.parent.parent)]
    return [sys.prefix, sys.base_prefix, str(Path(os.path.realpath(sys.executable)).parent.parent)]


def _mount_plan(paths: list[str]) -> list[str]:
    """Read-only binds of ``paths`` (outside ``/usr``, each once, the innermost dropped when its
    parent is there already), with their parent folders made searchable (bubblewrap would make
    them 0700, which an unprivileged sandbox user cannot cross)."""
    chosen: list[str] = []
    for p in sorted({os.path.normpath(p) for p in paths if p and os.path.isdir(p)}):
        if p in ("/", "/usr") or p.startswith("/usr/") or any(p.startswith(c + "/") for c in chosen):
            continue
        chosen.append(p)
    args: list[str] = []
    made: set[str] = set()
    for p in chosen:
        parents = list(reversed(Path(p).parents))[1:]  # without "/"
        for parent in parents:
            if str(parent) not in made:
                made.add(str(parent))
                args += ["--perms", "0755", "--dir", str(parent)]
        args += ["--ro-bind", p, p]
    return args


def _system_mounts() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("lib", "lib32", "lib64", "libx32", "bin", "sbin"):
        host = f"/{name}"
        if os.path.islink(host):
            args += ["--symlink", os.readlink(host), host]
        elif os.path.isdir(host):
            args += ["--ro-bind", host, host]
    args += ["--perms", "0755", "--dir", "/etc"]
    for f in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime"):
        args += ["--ro-bind-try", f, f]
    return args


def sandbox_command(
    sb: Sandbox, cfg: PythonSettings, root: Path, env: dict[str, str], launcher_args: list[str]
) -> list[str]:
    """The full bubblewrap command line that runs the launcher over ``root/ws`` and ``root/main.py``."""
    cmd = [sb.bwrap, "--die-with-parent", "--new-session"]
    if not sb.privileged:
        cmd.append("--unshare-user")
    cmd += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox"]
    if not cfg.allow_network:
        cmd.append("--unshare-net")
    if sb.privileged:  # only what the launcher needs to drop to the sandbox user, lost when it does
        cmd += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    cmd += _system_mounts()
    cmd += _mount_plan(list(sb.ro_paths))
    cmd += ["--proc", "/proc", "--dev", "/dev"]
    cmd += ["--size", str(cfg.tmp_mb * 1024 * 1024), "--perms", "1777", "--tmpfs", "/tmp"]
    cmd += ["--bind", str(root / "ws"), WORKSPACE]
    cmd += ["--perms", "0755", "--dir", os.path.dirname(SCRIPT), "--ro-bind", str(root / "main.py"), SCRIPT]
    cmd += ["--chdir", WORKSPACE, "--clearenv"]
    for k, v in env.items():
        cmd += ["--setenv", k, v]
    return [*cmd, "--", sb.interpreter, "-I", "-c", _LAUNCHER, *launcher_args]


def _unavailable(cfg: PythonSettings, why: str) -> SandboxUnavailable:
    who = "root" if os.geteuid() == 0 else f"uid {os.geteuid()}"
    return SandboxUnavailable(
        f"the python tool cannot start: bubblewrap (tools.python.bwrap = {cfg.bwrap!r}) {why}. Code runs only "
        "inside bubblewrap (read-only minimal root, no network, the workspace copy as the only writable place); "
        "install it (Debian/Ubuntu: apt-get install bubblewrap)"
        + ("" if os.geteuid() == 0 else ", and allow unprivileged user namespaces (user.max_user_namespaces > 0)")
        + f". The worker runs as {who}."
    )


async def probe_sandbox(cfg: PythonSettings) -> Sandbox:
    """The sandbox this worker can build, checked once per process and setting by running the
    launcher in it for real (so the mounts, the user switch and the interpreter all work);
    ``SandboxUnavailable`` naming the reason otherwise."""
    key = (cfg.bwrap, cfg.python, tuple(cfg.ro_paths), cfg.allow_network, cfg.sandbox_user, os.geteuid())
    async with _probe_lock:
        known = _probed.get(key)
        if known is None:
            known = await _probe(cfg)
            _probed[key] = known
    if isinstance(known, str):
        raise _unavailable(cfg, known)
    return known


def _find_binary(name: str) -> tuple[str | None, str]:
    """(absolute path, "") of the bubblewrap binary, or (None, why not)."""
    binary = name if os.path.isabs(name) else shutil.which(name)
    if binary is None:
        return None, "is not installed (not found on PATH)"
    if not os.path.isfile(binary):
        return None, f"does not exist at {binary}"
    if not os.access(binary, os.X_OK):
        return None, f"at {binary} is not executable"
    return binary, ""


async def _probe(cfg: PythonSettings) -> Sandbox | str:
    binary, why = _find_binary(cfg.bwrap)
    if binary is None:
        return why
    exe = cfg.python or sys.executable
    ro = [*_interpreter_paths(exe, cfg.python is not None), *map(str, cfg.ro_paths)]
    sb = Sandbox(bwrap=binary, privileged=os.geteuid() == 0, interpreter=exe, ro_paths=tuple(ro))
    try:
        uid, gid = _sandbox_ids(cfg, sb)
    except ToolError as e:
        return str(e)
    root = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="conclave-py-probe-"))
    try:
        await asyncio.to_thread(_prepare, root, {}, "import sys\n", uid, gid)
        cmd = sandbox_command(sb, cfg, root, {"PATH": "/usr/bin:/bin"}, _limits(cfg, 64, uid, gid))
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as e:
            return f"cannot be started ({e})"
        try:
            _, err = await asyncio.wait_for(proc.communicate(), 30)
        except TimeoutError:
            _kill_group(proc.pid)
            proc.kill()
            await proc.wait()
            return "did not finish a trivial run within 30 s"
    finally:
        await asyncio.to_thread(shutil.rmtree, root, True)
    if proc.returncode != 0:
        detail = err.decode(errors="replace").strip().splitlines()
        return f"failed on this machine ({detail[-1] if detail else f'exit status {proc.returncode}'})"
    return sb


def _limits(cfg: PythonSettings, nproc: int, uid: int, gid: int) -> list[str]:
    return [
        str(cfg.cpu_seconds),
        str(cfg.memory_mb * 1024 * 1024),
        str(cfg.max_file_mb * 1024 * 1024),
        str(nproc),
        str(uid),
        str(gid),
        SCRIPT,
    ]


class PythonArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=200_000, description="Python source to run.")
    timeout_s: float | None = Field(default=None, gt=0, description="Wall-clock limit (capped by the settings).")


def _sandbox_ids(cfg: PythonSettings, sb: Sandbox) -> tuple[int, int]:
    """(uid, gid) the launcher switches to: the sandbox user's for a root worker, else none (-1)."""
    if not sb.privileged:
        return -1, -1
    if not cfg.sandbox_user:
        raise ToolError("python sandbox: a root worker needs tools.python.sandbox_user (the code never runs as root)")
    try:
        pw = pwd.getpwnam(cfg.sandbox_user)
    except KeyError:
        raise ToolError(f"python sandbox: no user {cfg.sandbox_user!r} on this machine") from None
    if pw.pw_uid == 0:
        raise ToolError(f"python sandbox: sandbox_user {cfg.sandbox_user!r} is root; name an unprivileged user")
    return pw.pw_uid, pw.pw_gid


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
        uid, gid = _sandbox_ids(cfg, sb)
        files = ctx.workspace.files()
        root = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="conclave-py-"))
        try:
            ws = await asyncio.to_thread(_prepare, root, files, args.code, uid, gid)
            base = await asyncio.to_thread(_tasks_of, uid if uid >= 0 else os.getuid())
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
            cmd = sandbox_command(sb, cfg, root, env, _limits(cfg, nproc, uid, gid))
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
