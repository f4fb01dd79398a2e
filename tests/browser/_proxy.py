"""A TCP proxy on 127.0.0.1 that a test can cut: every open connection is closed at once and new
ones are refused until it is restored. A browser behind it sees what a dropped network looks like
(the event stream breaks mid-run) while the server and the worker go on."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class CuttableProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.cut = False
        self._writers: set[asyncio.StreamWriter] = set()
        #: The head of every HTTP request the browser sent (request line and headers).
        self.requests: list[str] = []
        self._server: asyncio.Server | None = None

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, log: bool = False) -> None:
        try:
            while data := await reader.read(65536):
                if log and data[:4] in (b"GET ", b"POST", b"HEAD"):
                    self.requests.append(data.split(b"\r\n\r\n", 1)[0].decode("latin-1"))
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._pipe(reader, up_writer, log=True), self._pipe(up_reader, writer))
        finally:
            self._writers -= {writer, up_writer}

    def sever(self) -> None:
        """Close every connection now and refuse new ones until ``restore``."""
        self.cut = True
        for w in list(self._writers):
            w.transport.abort()

    def restore(self) -> None:
        self.cut = False

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[CuttableProxy]:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            self.sever()
            self._server.close()
            await self._server.wait_closed()
