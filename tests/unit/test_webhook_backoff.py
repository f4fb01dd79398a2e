"""The retries of one webhook delivery (``dispatch.backoff``, tenacity): pauses double from
``backoff_initial_s`` with up to ``backoff_initial_s`` of jitter and never exceed ``backoff_max_s``;
the window ends at a deadline fixed by the stored first attempt, and a delivery taken over after its
window still gets one last attempt."""

from __future__ import annotations

import asyncio
import time

import pytest
from tenacity import RetryCallState

from conclave.config import WebhookSettings
from conclave.controller.dispatch import _Failed, backoff


async def _tries(cfg: WebhookSettings, deadline: float, pauses: list[float]) -> int:
    def record(state: RetryCallState) -> None:
        assert state.next_action is not None
        pauses.append(state.next_action.sleep)

    tries = 0
    async with asyncio.timeout(30):  # a window that never closed would fail here, not hang
        with pytest.raises(_Failed):
            async for attempt in backoff(cfg, deadline).copy(before_sleep=record):
                with attempt:
                    tries += 1
                    raise _Failed(503, "HTTP 503")
    return tries


async def test_a_delivery_taken_over_after_its_window_gets_exactly_one_last_attempt() -> None:
    pauses: list[float] = []
    assert await _tries(WebhookSettings(), time.time() - 1, pauses) == 1
    assert pauses == []


async def test_pauses_double_with_bounded_jitter_up_to_the_cap_until_the_deadline() -> None:
    cfg = WebhookSettings(backoff_initial_s=0.01, backoff_max_s=0.04)
    pauses: list[float] = []
    tries = await _tries(cfg, time.time() + 2.0, pauses)
    assert tries == len(pauses) + 1 and tries >= 4
    for n, pause in enumerate(pauses):
        floor = min(0.01 * 2**n, 0.04)
        assert floor <= pause <= min(floor + 0.01, 0.04), (n, pause)
    assert pauses[-1] == pytest.approx(0.04, abs=0.01), "the cap is reached"
    assert len(set(pauses[:3])) == 3, "the pauses grow"


async def test_an_error_that_is_no_failed_attempt_is_not_retried() -> None:
    tries = 0
    with pytest.raises(RuntimeError):
        async for attempt in backoff(WebhookSettings(), time.time() + 60):
            with attempt:
                tries += 1
                raise RuntimeError("a bug, not a receiver's answer")
    assert tries == 1
