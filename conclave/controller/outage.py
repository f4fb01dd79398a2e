"""Riding out a Redis outage: the one backoff of every loop a worker runs (the run queue, leases,
cancels, retention, the webhook dispatcher, the scheduler).

``DOWN`` is the one place that says what an outage raises (a full Redis too); those errors are
retried, with tenacity, backing off from 0.1 s doubling to 2 s, until the call succeeds or the loop's
``stop`` event is set. Anything else is raised: a bug is not an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError
from redis.exceptions import TimeoutError as RedisTimeoutError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

__all__ = ["DOWN", "nap", "riding_out"]

T = TypeVar("T")

#: What a Redis outage raises: the errors the loops ride out and retry, nothing else.
DOWN = (RedisConnectionError, RedisTimeoutError, OutOfMemoryError, ConnectionError, OSError)


async def nap(stop: asyncio.Event, seconds: float) -> None:
    """A pause that ends early when ``stop`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def riding_out(
    what: str, fn: Callable[[], Awaitable[T]], *, stop: asyncio.Event, who: str, log: logging.Logger
) -> T | None:
    """``fn()``, retried through a Redis outage until it succeeds (its result) or ``stop`` is set
    (None). ``who`` and ``what`` name the loop and the call in the warning each retry logs."""

    def log_retry(state: RetryCallState) -> None:
        err = state.outcome.exception() if state.outcome else None
        pause = state.next_action.sleep if state.next_action else 0.0
        log.warning("%s: %s failed, Redis unreachable (%s); retrying in %.1f s", who, what, err, pause)

    async def sleep(seconds: float) -> None:
        await nap(stop, seconds)

    retrying = AsyncRetrying(
        retry=retry_if_exception_type(DOWN),
        wait=wait_exponential(multiplier=0.1, max=2.0),
        stop=lambda _state: stop.is_set(),
        sleep=sleep,
        before_sleep=log_retry,
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                return await fn()
    except DOWN:
        if not stop.is_set():
            raise
    return None
