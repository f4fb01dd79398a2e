"""Group commit: the step commits of a worker's runs that are ready at the same moment go to Redis
as one pipeline.

A worker runs hundreds of runs on one event loop, and under load many of them reach a step
boundary in the same loop iteration. Sent one by one, each commit takes a pooled connection, is
written, read and released on its own: redis-py's per-command work (the pool's condition and
timeouts, the write, the reply) was the largest part of a worker's CPU per durable step after the
agent loop itself. Here the commits queued while a batch is in flight leave together in the next
batch, on one connection, in one write; Valkey runs them one after another as it would have, and
each still answers for itself. A lone commit (one run, or an idle worker) is sent as it always
was, so a quiet worker pays nothing for this.

Nothing about a commit changes: each is the same ``commit.lua`` call with its own arguments and
its own commit id, so a batch re-sent after a dropped connection is applied once per commit, as
a single re-sent commit is. A commit whose script Redis does not know (``NOSCRIPT`` after a
restart) goes again through redis-py's ``Script``, which loads it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

__all__ = ["GroupCommit"]

#: Batches in flight at once: while they are, newly ready commits wait to form the next batch.
IN_FLIGHT = 4


class GroupCommit:
    """Sends the calls of one script in batches (see the module docstring)."""

    def __init__(self, redis: Any, script: AsyncScript, *, in_flight: int = IN_FLIGHT) -> None:
        self.redis = redis
        self.script = script
        self.in_flight = in_flight
        self._queue: list[tuple[Sequence[Any], asyncio.Future[Any]]] = []
        self._sending = 0  # senders at work, counted in the sender itself (a done callback runs too late)
        self._senders: set[asyncio.Task[None]] = set()  # referenced, so none is collected mid-batch
        #: Batches sent and the commits they carried (for tests and benchmarks).
        self.batches = 0
        self.commits = 0

    async def call(self, args: Sequence[Any]) -> Any:
        """The script's reply to these arguments, as ``script(args=args)`` gives it."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((args, fut))
        # (no sender task alive at all: one was cancelled before it could start, at a loop's end)
        if self._sending < self.in_flight or not self._senders:
            self._sending = min(self._sending, len(self._senders)) + 1
            task = asyncio.ensure_future(self._send())
            self._senders.add(task)
            task.add_done_callback(self._senders.discard)
        return await fut

    async def _send(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                await self._one_batch(batch)
        finally:
            # In the same step as the last look at the queue: a commit queued after it starts a sender.
            self._sending -= 1

    async def _one_batch(self, batch: list[tuple[Sequence[Any], asyncio.Future[Any]]], *, loaded: bool = False) -> None:
        self.batches += 1
        self.commits += len(batch)
        if len(batch) == 1:
            args, fut = batch[0]
            await _settle(fut, self.script(args=args))
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for args, _ in batch:
                    pipe.evalsha(self.script.sha, 0, *args)
                replies = await pipe.execute(raise_on_error=False)
        except BaseException as e:  # the connection gave out after its retries: every commit failed
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(e)
            if not isinstance(e, Exception):
                raise
            return
        forgotten = []
        for (args, fut), reply in zip(batch, replies, strict=True):
            if isinstance(reply, NoScriptError):
                forgotten.append((args, fut))
            elif fut.done():
                continue  # its run was cancelled while the batch was out
            elif isinstance(reply, Exception):
                fut.set_exception(reply)
            else:
                fut.set_result(reply)
        if not forgotten:
            return
        if loaded:  # forgotten again at once: each goes through ``Script``, which loads and retries
            await asyncio.gather(*(_settle(fut, self.script(args=args)) for args, fut in forgotten))
            return
        self.batches -= 1  # the same batch, once more
        self.commits -= len(forgotten)
        try:
            await self.redis.script_load(self.script.script)
        except Exception as e:
            for _, fut in forgotten:
                if not fut.done():
                    fut.set_exception(e)
            return
        await self._one_batch(forgotten, loaded=True)


async def _settle(fut: asyncio.Future[Any], call: Any) -> None:
    try:
        reply = await call
    except Exception as e:
        if not fut.done():
            fut.set_exception(e)
        return
    except BaseException as e:
        if not fut.done():
            fut.set_exception(e)
        raise
    if not fut.done():
        fut.set_result(reply)
