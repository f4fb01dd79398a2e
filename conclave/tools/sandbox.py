"""The bubblewrap sandbox the ``python`` tool runs code in: how it is built, probed and limited.

See ``conclave.tools.python`` for what it confines and why. This module builds the ``bwrap`` command line
(a read-only minimal root, fresh ``/proc``, private ``/dev``, ``/tmp`` as a tmpfs, no network, the
workspace copy as the only writable mount), checks once per process that bubblewrap really runs here
(never a silently weaker sandbox), and holds the launcher that applies the resource limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conclave.core.workspace import confine

from .base import ToolError
from .settings import PythonSettings

__all__ = [
    "SCRIPT",
    "WORKSPACE",
    "Sandbox",
    "SandboxUnavailable",
    "kill_group",
    "limits",
    "prepare_root",
    "probe_sandbox",
    "sandbox_command",
    "sandbox_ids",
    "tasks_of",
]

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
    them 0700, which an unprivileged sandbox user cannot cross). They come after the sandbox's own
    ``/tmp``, so an interpreter installed under ``/tmp`` (a virtualenv in a temporary checkout) is
    bound on top of it, not hidden by it; ``/tmp`` itself keeps its mode."""
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
            if str(parent) == "/tmp":
                continue  # the sandbox's tmpfs (mode 1777), mounted before these binds
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
    cmd += ["--proc", "/proc", "--dev", "/dev"]
    cmd += ["--size", str(cfg.tmp_mb * 1024 * 1024), "--perms", "1777", "--tmpfs", "/tmp"]
    cmd += _mount_plan(list(sb.ro_paths))  # after /tmp: a later mount hides what is under it
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
        uid, gid = sandbox_ids(cfg, sb)
    except ToolError as e:
        return str(e)
    root = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="conclave-py-probe-"))
    try:
        await asyncio.to_thread(prepare_root, root, {}, "import sys\n", uid, gid)
        cmd = sandbox_command(sb, cfg, root, {"PATH": "/usr/bin:/bin"}, limits(cfg, 64, uid, gid))
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
            kill_group(proc.pid)
            proc.kill()
            await proc.wait()
            return "did not finish a trivial run within 30 s"
    finally:
        await asyncio.to_thread(shutil.rmtree, root, True)
    if proc.returncode != 0:
        detail = err.decode(errors="replace").strip().splitlines()
        return f"failed on this machine ({detail[-1] if detail else f'exit status {proc.returncode}'})"
    return sb


def limits(cfg: PythonSettings, nproc: int, uid: int, gid: int) -> list[str]:
    return [
        str(cfg.cpu_seconds),
        str(cfg.memory_mb * 1024 * 1024),
        str(cfg.max_file_mb * 1024 * 1024),
        str(nproc),
        str(uid),
        str(gid),
        SCRIPT,
    ]


def sandbox_ids(cfg: PythonSettings, sb: Sandbox) -> tuple[int, int]:
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


def tasks_of(uid: int) -> int:
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


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def prepare_root(root: Path, files: dict[str, bytes], code: str, uid: int, gid: int) -> Path:
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
