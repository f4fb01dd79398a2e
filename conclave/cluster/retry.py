"""The one retry policy of model calls, and the one place that decides what is retried.

Engines do not retry: an engine that fails raises an ``EngineError`` saying whether another try may
succeed (``retryable``) and, when the server said so, after how long (``retry_after_s``, from an
HTTP ``Retry-After``). The router retries a call across replicas, once, under the model's
``RetryPolicy`` (``ModelSpec.retry``), with tenacity: ``attempts`` tries in all, pauses doubling
from ``backoff_s`` with jitter (so Serve's router has learnt of a dead replica before the next try),
a server's ``Retry-After`` honoured up to ``max_retry_after_s``. When the tries run out the caller
gets ``NoHealthyReplica``; an error that is not retryable is raised at once, as the engine raised it.

Retried (``retryable``): a replica that died or could not be reached, an ``EngineError`` marked
retryable (overload, 429/5xx, a timeout or refused connection at an HTTP endpoint), a connection
error. Not retried: cancellation, and everything else (a bad request stays bad).

A stream is retried only while it has produced nothing: once chunks have reached the caller a
restart would duplicate text, so a failure mid-stream is raised as a retryable ``EngineError``
for the caller to judge.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field
from tenacity import AsyncRetrying, RetryCallState, RetryError, retry_if_exception, stop_after_attempt

from conclave.schema.chat import EngineError, NoHealthyReplica

__all__ = ["RetryPolicy", "brief", "retry_after", "retry_call", "retry_stream", "retryable", "unwrap"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class RetryPolicy(BaseModel):
    """How the calls to one model are retried across its replicas."""

    model_config = ConfigDict(extra="forbid")

    attempts: int = Field(default=3, ge=1, le=20, description="Tries of one call in all, the first included.")
    backoff_s: float = Field(default=0.2, ge=0, le=60, description="First pause; doubles each try, plus jitter.")
    max_backoff_s: float = Field(default=10.0, ge=0, description="Longest pause the doubling reaches.")
    max_retry_after_s: float = Field(default=60.0, ge=0, description="Cap on a server's Retry-After.")


def unwrap(err: BaseException) -> BaseException:
    """Ray raises a replica's exception as a ``RayTaskError`` that is also an instance of the
    original class; hand callers the original (with its message, not a remote traceback)."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException) and isinstance(err, type(cause)):
        return cause
    return err


def _ray(err: BaseException) -> bool | None:
    """Ray's verdict: True for a dead or unreachable replica, False for a cancelled task, None for
    anything else. Ray's classes are imported only where Ray is loaded — without it no Ray error
    exists — so reading a config (the CLI) does not import Ray."""
    if "ray" not in sys.modules:
        return None
    from ray.exceptions import ActorUnavailableError, RayActorError, TaskCancelledError
    from ray.serve.exceptions import DeploymentUnavailableError, ReplicaUnavailableError

    if isinstance(err, TaskCancelledError):
        return False
    # RayActorError includes ActorDiedError and ActorUnavailableError.
    gone = (RayActorError, ActorUnavailableError, ReplicaUnavailableError, DeploymentUnavailableError)
    return True if isinstance(err, gone) else None


def retryable(err: BaseException) -> bool:
    """True when ``err`` means "this try failed, another may not" rather than "the request is bad"."""
    if isinstance(err, asyncio.CancelledError):
        return False
    verdict = _ray(err)
    if verdict is not None:
        return verdict
    if isinstance(err, EngineError):
        return err.retryable
    return isinstance(err, ConnectionError)


def retry_after(err: BaseException | None) -> float | None:
    """The pause the server asked for (``Retry-After``), if the error carries one."""
    if err is None:
        return None
    value = getattr(unwrap(err), "retry_after_s", None)
    return float(value) if isinstance(value, int | float) else None


def brief(err: BaseException | None) -> str:
    """An error in one line: its class and the last line of its message."""
    if err is None:
        return "none"
    err = unwrap(err)
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[-1] if text else ''}"[:300]


def _pause(policy: RetryPolicy, err: BaseException | None, failed: int) -> float:
    """The pause after the ``failed``-th failed try: the server's ``Retry-After`` when it sent one
    (capped), else the backoff doubling from ``backoff_s`` with jitter: ``backoff_s`` × 2^(failed-1)
    + U(0, ``backoff_s``), at most ``max_backoff_s`` (what tenacity's ``wait_exponential_jitter`` does)."""
    hint = retry_after(err)
    if hint is not None:
        return min(hint, policy.max_retry_after_s)
    base = policy.backoff_s * 2.0 ** (failed - 1) + random.uniform(0, policy.backoff_s)
    return max(0.0, min(base, policy.max_backoff_s))


def _retrying(
    policy: RetryPolicy,
    model: str,
    what: str,
    retry_if: Callable[[BaseException], bool],
    on_retry: Callable[[], None],
    *,
    done: int = 0,
) -> AsyncRetrying:
    """Tenacity over the tries that remain after ``done`` failed ones (counted in the pauses and
    the log lines, so the policy reads the same whether or not the first try ran outside)."""

    def wait(state: RetryCallState) -> float:
        return _pause(policy, state.outcome.exception() if state.outcome else None, done + state.attempt_number)

    def before_sleep(state: RetryCallState) -> None:
        on_retry()
        err = state.outcome.exception() if state.outcome else None
        _log_retry(model, what, done + state.attempt_number, policy, err)

    return AsyncRetrying(
        stop=stop_after_attempt(policy.attempts - done),
        wait=wait,
        retry=retry_if_exception(retry_if),
        before_sleep=before_sleep,
    )


def _log_retry(model: str, what: str, attempt: int, policy: RetryPolicy, err: BaseException | None) -> None:
    logger.warning("model %s: %s attempt %d/%d failed: %s", model, what, attempt, policy.attempts, brief(err))


async def _close(stream: AsyncIterator[T]) -> None:
    """Close an abandoned stream now, not at garbage collection: an engine stops generating on ``aclose``."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


def _exhausted(model: str, policy: RetryPolicy, err: RetryError) -> NoHealthyReplica:
    last = err.last_attempt.exception()
    return NoHealthyReplica(model, f"{policy.attempts} attempts failed; last error: {brief(last)}")


async def retry_call(
    policy: RetryPolicy, model: str, call: Callable[[], Awaitable[T]], *, on_retry: Callable[[], None] = lambda: None
) -> T:
    """``call()`` under ``policy``: its result, the first error that is not retryable (unwrapped), or
    ``NoHealthyReplica`` when every try failed retryably. ``on_retry`` runs before each new try.

    The first try runs bare: nearly every call succeeds at once, and tenacity's per-attempt
    machinery around it was the largest single cost of a worker's step (py-spy, docs/benchmarks.md).
    Only a retryable failure enters tenacity, for the tries that remain."""
    try:
        return await call()
    except Exception as e:
        if policy.attempts <= 1 or not retryable(e):
            raise unwrap(e) from None
        first: BaseException = e
    on_retry()
    _log_retry(model, "call", 1, policy, first)
    await asyncio.sleep(_pause(policy, first, 1))
    try:
        async for attempt in _retrying(policy, model, "call", retryable, on_retry, done=1):
            with attempt:
                return await call()
    except RetryError as e:
        raise _exhausted(model, policy, e) from None
    except Exception as e:
        raise unwrap(e) from None
    raise AssertionError("unreachable: tenacity returns or raises")  # pragma: no cover


async def retry_stream(
    policy: RetryPolicy,
    model: str,
    open_stream: Callable[[], AsyncIterator[T]],
    *,
    on_retry: Callable[[], None] = lambda: None,
    cancel: Callable[[AsyncIterator[T]], None] | None = None,
) -> AsyncIterator[T]:
    """The items of ``open_stream()``, reopened under ``policy`` while it has yielded nothing.
    ``cancel`` stops a stream the caller abandoned (closed or cancelled) at its source; without it
    the stream is closed (``aclose``)."""
    started = False

    def again(err: BaseException) -> bool:
        return not started and retryable(err)

    try:
        async for attempt in _retrying(policy, model, "stream", again, on_retry):
            with attempt:
                stream = open_stream()
                try:
                    async for item in stream:
                        started = True
                        yield item
                except (GeneratorExit, asyncio.CancelledError):
                    if cancel is not None:
                        cancel(stream)
                    else:
                        await _close(stream)
                    raise
                except Exception as e:
                    if started and retryable(e):
                        raise EngineError(
                            f"model {model!r}: the replica failed mid-stream ({brief(e)}); the partial answer "
                            "was already sent, so the stream is not restarted",
                            retryable=True,
                            status=503,
                        ) from None
                    raise
                return
    except RetryError as e:
        raise _exhausted(model, policy, e) from None
    except Exception as e:
        raise unwrap(e) from None
