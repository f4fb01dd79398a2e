"""A fault-injecting TCP proxy for tests: sits between Redis clients and the server on 127.0.0.1.

Every reply chunk the server sends may, at random: be dropped with the connection closed right after the
server applied the command (a *lost reply*: the client must retry a command that already happened),
have the connection reset before the request reaches the server, or be delayed. ``counts`` says how
many faults of each kind it injected.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter

__all__ = ["FaultProxy"]


class FaultProxy:
    def __init__(
        self,
        upstream_port: int,
        *,
        p_lost_reply: float = 0.01,
        p_reset: float = 0.005,
        p_delay: float = 0.02,
        max_delay_s: float = 0.05,
        seed: int = 0,
    ) -> None:
        self.upstream_port = upstream_port
        self.p_lost_reply, self.p_reset, self.p_delay, self.max_delay_s = p_lost_reply, p_reset, p_delay, max_delay_s
        self.rng = random.Random(seed)
        self.counts: Counter[str] = Counter()
        self.enabled = True
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def faults(self) -> int:
        return self.counts["lost_reply"] + self.counts["reset"] + self.counts["delay"]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _roll(self, p: float) -> bool:
        return self.enabled and self.rng.random() < p

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_w.close()
            return
        up = asyncio.ensure_future(self._pump(client_r, server_w, client_w, server_w, to_server=True))
        down = asyncio.ensure_future(self._pump(server_r, client_w, client_w, server_w, to_server=False))
        for t in (up, down):
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        for t in (up, down):
            t.cancel()
        for w in (client_w, server_w):
            with contextlib.suppress(Exception):
                w.close()

    async def _pump(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        client_w: asyncio.StreamWriter,
        server_w: asyncio.StreamWriter,
        *,
        to_server: bool,
    ) -> None:
        while True:
            chunk = await src.read(65536)
            if not chunk:
                return
            if to_server and self._roll(self.p_reset):
                self.counts["reset"] += 1  # the request never reaches the server
                return
            if not to_server and self._roll(self.p_lost_reply):
                self.counts["lost_reply"] += 1  # the server did the work; the client never hears of it
                return
            if self._roll(self.p_delay):
                self.counts["delay"] += 1
                await asyncio.sleep(self.rng.uniform(0.001, self.max_delay_s))
            dst.write(chunk)
            await dst.drain()
