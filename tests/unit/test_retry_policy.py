"""The one retry policy of model calls (``cluster/retry.py``): what is retried, how often, and that a
call that succeeds at once never enters the retry machinery."""

from __future__ import annotations

import asyncio
import logging

import pytest

from conclave.cluster import retry
from conclave.cluster.retry import RetryPolicy, retry_call
from conclave.schema.chat import EngineError, NoHealthyReplica

FAST = RetryPolicy(attempts=3, backoff_s=0.0, max_backoff_s=0.0)


class Flaky:
    """Fails ``failures`` times with ``error``, then answers ``"ok"``."""

    def __init__(self, failures: int, error: BaseException) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"


async def test_a_call_that_succeeds_at_once_never_enters_tenacity(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_tenacity(*a: object, **kw: object) -> None:
        raise AssertionError("the retry loop was built for a call that succeeded")

    monkeypatch.setattr(retry, "_retrying", no_tenacity)
    retried: list[int] = []
    call = Flaky(0, EngineError("x", retryable=True))
    assert await retry_call(FAST, "m", call, on_retry=lambda: retried.append(1)) == "ok"
    assert call.calls == 1 and retried == []


async def test_retryable_failures_are_retried_until_one_succeeds(caplog: pytest.LogCaptureFixture) -> None:
    retried: list[int] = []
    call = Flaky(2, EngineError("overloaded", retryable=True, status=503))
    with caplog.at_level(logging.WARNING, logger="conclave.cluster.retry"):
        assert await retry_call(FAST, "m", call, on_retry=lambda: retried.append(1)) == "ok"
    assert call.calls == 3 and len(retried) == 2
    assert [r.getMessage().split(" failed")[0] for r in caplog.records] == [
        "model m: call attempt 1/3",
        "model m: call attempt 2/3",
    ]


async def test_when_every_try_fails_retryably_the_caller_gets_no_healthy_replica() -> None:
    call = Flaky(10, ConnectionError("refused"))
    with pytest.raises(NoHealthyReplica, match="3 attempts failed; last error: ConnectionError: refused"):
        await retry_call(FAST, "m", call)
    assert call.calls == 3


@pytest.mark.parametrize("attempts", [1, 3])
async def test_an_error_that_is_not_retryable_is_raised_at_once_as_raised(attempts: int) -> None:
    bad = EngineError("bad request", retryable=False, status=400)
    call = Flaky(1, bad)
    with pytest.raises(EngineError) as e:
        await retry_call(RetryPolicy(attempts=attempts, backoff_s=0.0), "m", call)
    assert e.value is bad and call.calls == 1


async def test_a_single_attempt_policy_raises_a_retryable_error_without_retrying() -> None:
    call = Flaky(1, EngineError("overloaded", retryable=True))
    with pytest.raises(EngineError, match="overloaded"):
        await retry_call(RetryPolicy(attempts=1), "m", call)
    assert call.calls == 1


async def test_the_servers_retry_after_sets_the_pause_and_the_backoff_doubles_otherwise() -> None:
    policy = RetryPolicy(attempts=4, backoff_s=0.1, max_backoff_s=0.3, max_retry_after_s=2.0)
    assert retry._pause(policy, EngineError("x", retryable=True, retry_after_s=5.0), 1) == 2.0
    assert retry._pause(policy, EngineError("x", retryable=True, retry_after_s=0.5), 3) == 0.5
    pauses = [retry._pause(policy, ConnectionError(), n) for n in (1, 2, 3)]
    assert 0.1 <= pauses[0] <= 0.2 and 0.2 <= pauses[1] <= 0.3 and pauses[2] == 0.3


async def test_cancellation_is_never_retried() -> None:
    call = Flaky(1, asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        await retry_call(FAST, "m", call)
    assert call.calls == 1
