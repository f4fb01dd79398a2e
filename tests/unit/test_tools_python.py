"""The python sandbox: hostile code is stopped or refused with a clear error; files sync back.

Confinement tests in ``test_python_sandbox.py``; these are the limits and the file round trip."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conclave.core.workspace import Workspace
from conclave.tools import ToolContext, ToolSettings
from conclave.tools.base import ToolResult, execute
from conclave.tools.python import PythonTool, SandboxUnavailable, probe_sandbox
from conclave.tools.settings import PythonSettings


@pytest.fixture
async def sandbox() -> PythonTool:
    cfg = PythonSettings(cpu_seconds=1, wall_seconds=4, max_output_bytes=4000)
    try:
        await probe_sandbox(cfg)
    except SandboxUnavailable as e:  # scripts/test.sh installs bubblewrap where it can
        pytest.skip(str(e))
    return PythonTool(ToolSettings(python=cfg))


async def run(tool: PythonTool, code: str, ws: Workspace | None = None) -> ToolResult:
    return await execute(tool, {"code": code}, ToolContext(workspace=ws or Workspace()))


async def test_files_round_trip_and_links_stay_out(sandbox: PythonTool) -> None:
    ws = Workspace({"in.txt": b"21", "gone.txt": b"x"})
    code = (
        "import os\n"
        "n = int(open('in.txt').read())\n"
        "os.makedirs('out', exist_ok=True)\n"
        "open('out/answer.txt', 'w').write(str(n * 2))\n"
        "os.remove('gone.txt')\n"
        "os.symlink('/etc/passwd', 'leak')\n"
        "print('ok')\n"
    )
    r = await run(sandbox, code, ws)
    assert not r.is_error, r.content
    assert r.content.startswith("exit status 0\n--- stdout ---\nok")
    assert ws.files() == {"in.txt": b"21", "out/answer.txt": b"42"}
    assert "not saved: leak (a link)" in r.content and "deleted gone.txt" in r.content


async def test_an_endless_loop_hits_the_cpu_limit(sandbox: PythonTool) -> None:
    # A generous wall clock: on a loaded machine 1 s of CPU can take many seconds to use up.
    tool = PythonTool(ToolSettings(python=sandbox.cfg.model_copy(update={"wall_seconds": 120})))
    r = await run(tool, "while True: pass")
    assert r.is_error and "CPU-time limit of 1 s" in r.content


async def test_sleeping_forever_hits_the_wall_clock_limit(sandbox: PythonTool) -> None:
    r = await run(sandbox, "import time; time.sleep(60)")
    assert r.is_error and "wall-clock limit of 4 s" in r.content


async def test_allocating_10_gb_fails(sandbox: PythonTool) -> None:
    r = await run(sandbox, "x = bytearray(10 * 1024 ** 3)")
    assert r.is_error and "MemoryError" in r.content and "out of memory" in r.content


async def test_forking_is_bounded(sandbox: PythonTool) -> None:
    code = (
        "import os, time\nfor _ in range(500):\n    if os.fork() == 0:\n        time.sleep(30)\n        os._exit(0)\n"
    )
    r = await run(sandbox, code)
    assert r.is_error and "BlockingIOError" in r.content and "Resource temporarily unavailable" in r.content


async def test_output_is_capped(sandbox: PythonTool) -> None:
    r = await run(sandbox, "import sys\nwhile True: sys.stdout.write('x' * 1000)")
    assert r.is_error and "output passed the 4000-byte limit" in r.content


async def test_no_inherited_environment(sandbox: PythonTool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_TOKEN", "s3cr3t")
    r = await run(sandbox, "import os; print(sorted(os.environ))")
    assert "SECRET_TOKEN" not in r.content and "PATH" in r.content


async def test_disabled_tool_refuses() -> None:
    disabled = PythonTool(ToolSettings(python=PythonSettings(enabled=False)))
    r = await run(disabled, "print(1)")
    assert r.is_error and "disabled" in r.content


@pytest.fixture
def folder_under_tmp() -> Iterator[Path]:
    """A host folder under /tmp, made by mkdtemp (0700) and opened for reading, with one file."""
    data = Path(tempfile.mkdtemp(prefix="conclave-data-"))
    (data / "facts.txt").write_text("42")
    data.chmod(0o755)
    (data / "facts.txt").chmod(0o644)
    yield data
    shutil.rmtree(data, ignore_errors=True)


async def test_a_read_only_folder_under_tmp_is_visible_in_the_sandbox(
    sandbox: PythonTool, folder_under_tmp: Path
) -> None:
    """Host folders the code may read (``ro_paths``; the interpreter's own prefix too, e.g. a
    virtualenv in a fresh clone under /tmp) are mounted after the sandbox's private /tmp, so one
    that lives under /tmp is not hidden by it — and /tmp stays a writable tmpfs."""
    facts = folder_under_tmp / "facts.txt"
    tool = PythonTool(ToolSettings(python=sandbox.cfg.model_copy(update={"ro_paths": [folder_under_tmp]})))
    r = await run(tool, f"print(open({str(facts)!r}).read()); open('/tmp/scratch', 'w').write('ok')")
    assert not r.is_error, r.content
    assert "--- stdout ---\n42" in r.content
