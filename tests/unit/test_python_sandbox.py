"""The python tool's bubblewrap sandbox confines the code: the worker's files, its processes, the
host's file system and its network are out of reach; where bubblewrap cannot run, the tool refuses
to start instead of running the code less confined.

Each confinement test makes the thing to protect real (a config file with a secret, readable by
the uid the code runs as; a listening socket on the worker's 127.0.0.1; a writable folder on the
host) and shows the code cannot get at it.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from conclave.core.workspace import Workspace
from conclave.tools import ToolContext, ToolSettings
from conclave.tools.base import ToolResult, execute
from conclave.tools.python import PythonTool, SandboxUnavailable, probe_sandbox
from conclave.tools.settings import PythonSettings

ROOT = Path(__file__).resolve().parents[2]
SECRET = "redis-password-hunter2"


@pytest.fixture
async def tool() -> PythonTool:
    cfg = PythonSettings(wall_seconds=20)
    try:
        await probe_sandbox(cfg)
    except SandboxUnavailable as e:  # scripts/test.sh installs bubblewrap where it can
        pytest.skip(str(e))
    return PythonTool(ToolSettings(python=cfg))


def _code_uid() -> int:
    """The uid the sandboxed code runs as: ``nobody`` under a root worker, else the worker's."""
    return pwd.getpwnam("nobody").pw_uid if os.geteuid() == 0 else os.geteuid()


@pytest.fixture
def outside() -> Iterator[Path]:
    """A folder outside the workspace that the code's uid could read and write, were it visible."""
    d = Path(tempfile.mkdtemp(prefix="conclave-outside-"))
    d.chmod(0o777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _secret_config(folder: Path) -> Path:
    """The worker's config, with the Redis password: mode 0600, owned by the uid the code runs as
    (so file permissions alone would not stop it; only the sandbox can)."""
    path = folder / "conclave.toml"
    path.write_text(f'redis_url = "redis://:{SECRET}@127.0.0.1:6379/0"\n')
    os.chown(path, _code_uid(), -1)
    path.chmod(0o600)
    return path


async def run(tool: PythonTool, code: str, ws: Workspace | None = None) -> ToolResult:
    return await execute(tool, {"code": code}, ToolContext(workspace=ws or Workspace()))


async def test_the_code_runs_on_the_workers_interpreter_as_an_unprivileged_user(tool: PythonTool) -> None:
    r = await run(tool, "import os, sys; print(tuple(sys.version_info), sys.prefix, os.getuid(), os.getcwd())")
    assert not r.is_error, r.content
    assert f"{tuple(sys.version_info)} {sys.prefix} {_code_uid()} /workspace" in r.content
    assert _code_uid() != 0


async def test_the_workers_config_file_cannot_be_read(tool: PythonTool, outside: Path) -> None:
    config = _secret_config(outside)
    code = (
        "import os\n"
        f"for p in [{str(config)!r}, {str(outside)!r}]:\n"
        "    try:\n"
        "        print(p, open(p).read() if os.path.isfile(p) else os.listdir(p))\n"
        "    except OSError as e:\n"
        "        print(p, 'refused:', type(e).__name__)\n"
    )
    r = await run(tool, code)
    assert not r.is_error, r.content
    assert SECRET not in r.content
    assert f"{config} refused: FileNotFoundError" in r.content and f"{outside} refused: FileNotFoundError" in r.content


async def test_proc_shows_only_the_sandbox(tool: PythonTool, monkeypatch: pytest.MonkeyPatch) -> None:
    """``/proc/1/environ`` and the worker's own ``/proc/<pid>/environ`` give nothing away: the
    sandbox has its own PID namespace and a fresh /proc."""
    monkeypatch.setenv("CONCLAVE_REDIS_URL", f"redis://:{SECRET}@127.0.0.1:6379/0")
    code = (
        "import os\n"
        f"for p in ['/proc/1/environ', '/proc/{os.getpid()}/environ', '/proc/{os.getppid()}/environ']:\n"
        "    try:\n"
        "        print(p, 'read:', open(p, 'rb').read())\n"
        "    except OSError as e:\n"
        "        print(p, 'refused:', type(e).__name__)\n"
        "print('pids', sorted(int(n) for n in os.listdir('/proc') if n.isdigit()))\n"
    )
    r = await run(tool, code)
    assert not r.is_error, r.content
    assert SECRET not in r.content
    assert f"/proc/{os.getpid()}/environ refused: FileNotFoundError" in r.content  # the worker is not there
    line = next(x for x in r.content.splitlines() if x.startswith("/proc/1/environ"))
    # pid 1 is the sandbox's own init: unreadable (root worker), or the sandbox's empty environment.
    assert "refused: PermissionError" in line or "CONCLAVE" not in line, line
    pids = eval(next(x for x in r.content.splitlines() if x.startswith("pids "))[5:])
    assert max(pids) < 10, pids  # only the sandbox's few processes


async def test_nothing_outside_the_workspace_can_be_written(tool: PythonTool, outside: Path) -> None:
    marker = f"conclave-sandbox-{os.getpid()}"
    targets = [outside / "dropped.txt", Path("/usr") / marker, Path(sys.prefix) / marker, Path("/etc") / marker]
    code = (
        "import os\n"
        f"for p in {[str(t) for t in targets]!r}:\n"
        "    try:\n"
        "        open(p, 'w').write('x')\n"
        "        print(p, 'written')\n"
        "    except OSError as e:\n"
        "        print(p, 'refused:', type(e).__name__, e.strerror)\n"
        f"open('/tmp/{marker}', 'w').write('scratch')  # the sandbox's own tmpfs\n"
        "open('kept.txt', 'w').write('in the workspace')\n"
    )
    ws = Workspace()
    r = await run(tool, code, ws)
    assert not r.is_error, r.content
    assert "written" not in r.content.replace("wrote kept.txt", "")
    assert r.content.count("refused:") == len(targets)
    assert "Read-only file system" in r.content
    left = await asyncio.to_thread(lambda: [t for t in [*map(str, targets), f"/tmp/{marker}"] if os.path.exists(t)])
    assert left == []
    assert ws.files() == {"kept.txt": b"in the workspace"}


@pytest.fixture
async def listener() -> AsyncIterator[tuple[int, list[int]]]:
    """A service on the worker's loopback (as Redis would be); counts connections."""
    connections: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield port, connections
    server.close()
    await server.wait_closed()


async def test_no_socket_reaches_the_worker_or_the_network(tool: PythonTool, listener: tuple[int, list[int]]) -> None:
    port, connections = listener
    code = (
        "import socket\n"
        f"for host, port in [('127.0.0.1', {port}), ('1.1.1.1', 80), ('::1', {port})]:\n"
        "    try:\n"
        "        socket.create_connection((host, port), timeout=3)\n"
        "        print(host, 'connected')\n"
        "    except OSError as e:\n"
        "        print(host, 'refused:', type(e).__name__, e.strerror)\n"
    )
    r = await run(tool, code)
    assert not r.is_error, r.content
    assert "connected" not in r.content, r.content
    assert "127.0.0.1 refused: ConnectionRefusedError" in r.content  # the sandbox's own, empty loopback
    assert "1.1.1.1 refused: OSError Network is unreachable" in r.content
    assert connections == []


async def test_a_missing_bwrap_refuses_to_start_and_runs_nothing() -> None:
    tool = PythonTool(ToolSettings(python=PythonSettings(bwrap="/nonexistent/bin/bwrap")))
    ws = Workspace()
    r = await run(tool, "open('ran.txt', 'w').write('x')", ws)
    assert r.is_error
    assert "the python tool cannot start: bubblewrap" in r.content
    assert "does not exist at /nonexistent/bin/bwrap" in r.content and "apt-get install bubblewrap" in r.content
    assert ws.files() == {}


async def test_a_bwrap_that_cannot_make_namespaces_refuses_to_start(tmp_path: Path) -> None:
    """As bubblewrap does where user namespaces are disabled: it exits non-zero with a message."""
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    tool = PythonTool(ToolSettings(python=PythonSettings(bwrap=str(fake))))
    ws = Workspace()
    r = await run(tool, "open('ran.txt', 'w').write('x')", ws)
    assert r.is_error and "cannot start" in r.content and "No permissions to create new namespace" in r.content
    assert ws.files() == {}


def _closed_ancestor(p: str) -> str | None:
    """The outermost folder on the way to ``p`` that other users cannot enter (no o+x), if any."""
    for folder in [*reversed(Path(p).parents), Path(p)][1:]:  # "/" left out
        if not folder.stat().st_mode & 0o001:
            return str(folder)
    return None


def _as_unprivileged_worker(script: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` as a worker whose uid is ``nobody`` (not root). The interpreter and the
    checkout may live where nobody cannot enter (under /root, or a 0700 temporary folder of a fresh
    clone): a thin outer bubblewrap (run by root) puts a searchable tmpfs over each such folder with
    those paths mounted back read-only; everything else is the host as it is."""
    outer = ["bwrap", "--dev-bind", "/", "/", "--die-with-parent"]
    closed: dict[str, list[str]] = {}
    for p in sorted({sys.base_prefix, sys.prefix, str(ROOT)}):
        if (c := _closed_ancestor(p)) is not None:
            closed.setdefault(c, []).append(p)
    for c, keep in closed.items():
        outer += ["--perms", "0755", "--tmpfs", c]
        made = {c}
        for p in keep:
            for parent in reversed(Path(p).parents):  # bubblewrap would make them 0700
                if str(parent).startswith(c + "/") and str(parent) not in made:
                    made.add(str(parent))
                    outer += ["--perms", "0755", "--dir", str(parent)]
            outer += ["--ro-bind", p, p]
    nobody = pwd.getpwnam("nobody")
    cmd = [*outer, "setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
    cmd += ["--inh-caps=-all", "--", sys.executable, "-c", script]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd="/", env={"PATH": "/usr/bin:/bin"})


@pytest.mark.skipif(os.geteuid() != 0, reason="setting up an unprivileged worker needs root")
@pytest.mark.skipif(shutil.which("setpriv") is None or shutil.which("bwrap") is None, reason="needs setpriv and bwrap")
def test_a_non_root_workers_own_config_is_out_of_reach(outside: Path) -> None:
    """The case the issue names: a worker that is not root can read its own config (0600, its own
    uid) — and the code it sandboxes, running as that same uid, cannot."""
    config = _secret_config(outside)
    script = (
        "import asyncio, os, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from conclave.core.workspace import Workspace\n"
        "from conclave.tools import ToolContext\n"
        "from conclave.tools.base import execute\n"
        "from conclave.tools.python import PythonTool\n"
        f"print('worker', os.getuid(), open({str(config)!r}).read().strip())\n"
        "code = 'import os\\nprint(\"code\", os.getuid())\\ntry:\\n    print(open(%r).read())\\n'"
        "       'except OSError as e:\\n    print(\"refused:\", type(e).__name__)' % " + repr(str(config)) + "\n"
        "r = asyncio.run(execute(PythonTool(), {'code': code}, ToolContext(workspace=Workspace())))\n"
        "print(r.content)\n"
    )
    p = _as_unprivileged_worker(script)
    assert p.returncode == 0, p.stderr[-2000:]
    uid = pwd.getpwnam("nobody").pw_uid
    assert f"worker {uid} " in p.stdout and SECRET in p.stdout.splitlines()[0]  # the worker can read it
    assert f"code {uid}" in p.stdout and "refused: FileNotFoundError" in p.stdout, p.stdout
    assert SECRET not in "\n".join(p.stdout.splitlines()[1:])  # the sandboxed code cannot
