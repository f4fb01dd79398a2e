"""The sim engine's batching cost model (``SimOptions.batching``), checked on its recorded schedule.

No test reads a clock: the engine spends its time through a ``sleep`` the test owns. ``Recording``
returns at once and remembers what it was asked to wait; ``Stepped`` holds every wait until the test
releases it, so the test can look at the schedule while a batch "runs".
"""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from conclave.cluster.engines.sim import SimBatch, SimEngine, SimOptions, count_tokens
from conclave.schema.chat import ChatRequest

BASE, PER_TOKEN = 0.05, 0.001


class Recording:
    """A sleep that returns at once (after one turn of the loop) and records the seconds asked."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


class Stepped:
    """A sleep that waits until the test releases it, oldest first."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self._gates: list[asyncio.Event] = []
        self._released = 0

    async def sleep(self, seconds: float) -> None:
        gate = asyncio.Event()
        self.waits.append(seconds)
        self._gates.append(gate)
        await gate.wait()

    async def release(self) -> float:
        """Let the oldest held wait end; returns the seconds it stood for."""
        await settle()
        assert self._released < len(self._gates), "nothing is waiting"
        self._gates[self._released].set()
        self._released += 1
        await settle()
        return self.waits[self._released - 1]

    @property
    def held(self) -> int:
        return len(self._gates) - self._released


async def settle() -> None:
    """Let every ready task run until it waits on something."""
    for _ in range(50):
        await asyncio.sleep(0)


def engine(clock: Recording | Stepped, *, mode: str = "echo", window: float = 0.002, cap: int = 256, **extra: object):
    opts = {
        "mode": mode,
        "latency_s": BASE,
        "batching": {"window_s": window, "max_batch": cap, "per_token_s": PER_TOKEN},
        **extra,
    }
    return SimEngine(opts, sleep=clock.sleep)


def req(text: str = "one two three", n: int = 1, seed: int | None = None) -> ChatRequest:
    return ChatRequest(model="sim", messages=[{"role": "user", "content": text}], n=n, seed=seed)


async def test_one_request_with_n_samples_costs_the_same_as_n_concurrent_requests():
    c1, c2 = Recording(), Recording()
    one, many = engine(c1), engine(c2)
    r = await one.chat(req(n=8))
    rs = await asyncio.gather(*(many.chat(req()) for _ in range(8)))
    assert len(r.choices) == 8 and all(len(x.choices) == 1 for x in rs)
    cost = BASE + PER_TOKEN * 3  # echo: every sample is the 3-word prompt
    assert list(one.batches) == [SimBatch(samples=8, requests=1, max_tokens=3, seconds=cost)]
    assert list(many.batches) == [SimBatch(samples=8, requests=8, max_tokens=3, seconds=cost)]
    assert c1.waits == c2.waits == [0.002, cost]  # the window, then the one batch


async def test_a_batch_is_charged_base_plus_per_token_times_its_longest_sample():
    clock = Recording()
    replies = [{"content": "short", "weight": 1}, {"content": "a much longer answer of seven words", "weight": 1}]
    e = engine(clock, mode="sample", replies=replies)
    r = await e.chat(req(n=16, seed=3))
    lengths = [count_tokens(ch.message.content or "") for ch in r.choices]
    assert set(lengths) == {1, 7}, "the seed should draw both replies"
    (batch,) = e.batches
    assert batch.samples == 16 and batch.max_tokens == 7
    assert batch.seconds == pytest.approx(BASE + PER_TOKEN * 7)
    assert r.usage.completion_tokens == sum(lengths)
    assert e.batch_cost([1, 7, 3]) == pytest.approx(BASE + PER_TOKEN * 7)


async def test_the_batch_size_cap_splits_samples_into_batches_that_run_one_after_another():
    clock = Stepped()
    e = engine(clock, cap=3)
    task = asyncio.ensure_future(e.chat(req(n=8)))
    await settle()
    assert e.batch_count == 1, "a full batch starts without waiting out the window"
    for expected in (2, 3):
        await settle()
        assert e.batch_count == expected - 1 and not task.done(), "the next batch waits for the running one"
        await clock.release()
        assert e.batch_count == expected
    assert not task.done(), "the request ends with its last sample"
    await clock.release()
    r = await task
    assert len(r.choices) == 8
    assert [b.samples for b in e.batches] == [3, 3, 2]
    assert clock.waits == [b.seconds for b in e.batches]


async def test_requests_arriving_within_the_window_share_one_batch():
    clock = Stepped()
    e = engine(clock, window=0.01)
    a = asyncio.ensure_future(e.chat(req("a b")))
    await settle()
    assert e.batch_count == 0 and clock.waits == [0.01], "an idle engine waits out the window"
    b = asyncio.ensure_future(e.chat(req("a b c d e", n=2)))
    assert await clock.release() == 0.01
    assert list(e.batches) == [SimBatch(samples=3, requests=2, max_tokens=5, seconds=BASE + PER_TOKEN * 5)]
    await clock.release()
    await asyncio.gather(a, b)


async def test_a_request_arriving_while_a_batch_runs_goes_in_the_next_batch_without_a_new_window():
    clock = Stepped()
    e = engine(clock, window=0.01)
    a = asyncio.ensure_future(e.chat(req("x")))
    await clock.release()  # the window
    assert e.batch_count == 1
    b = asyncio.ensure_future(e.chat(req("x y")))
    await settle()
    assert e.batch_count == 1, "the running batch does not take the newcomer"
    await clock.release()  # the first batch ends, the second starts at once
    assert a.done() and not b.done()
    assert e.batch_count == 2 and clock.waits[-1] == pytest.approx(BASE + PER_TOKEN * 2)
    await clock.release()
    await b
    assert [b.samples for b in e.batches] == [1, 1]


async def test_a_cancelled_request_leaves_the_queue_and_is_never_generated():
    clock = Stepped()
    e = engine(clock, cap=1)
    a, b, c = (asyncio.ensure_future(e.chat(req(t))) for t in ("a", "b b", "c c c"))
    await settle()
    assert e.batch_count == 1
    b.cancel()
    await clock.release()
    await clock.release()
    assert a.done() and c.done(), "c's batch comes right after a's"
    await asyncio.gather(a, c)
    assert b.cancelled()
    assert [x.max_tokens for x in e.batches] == [1, 3]
    assert e.batched_samples == 2 and clock.held == 0


async def test_streaming_is_charged_like_chat():
    clock = Recording()
    e = engine(clock)
    chunks = [ch async for ch in e.stream(req("one two three four", n=2))]
    assert list(e.batches) == [SimBatch(samples=2, requests=1, max_tokens=4, seconds=BASE + PER_TOKEN * 4)]
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices and ch.choices[0].index == 0)
    assert text == "one two three four"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8


async def test_closing_the_engine_cancels_waiting_requests():
    clock = Stepped()
    e = engine(clock, cap=1)
    a, b = asyncio.ensure_future(e.chat(req())), asyncio.ensure_future(e.chat(req()))
    await settle()
    await e.close()
    await asyncio.gather(a, b, return_exceptions=True)
    assert a.cancelled() and b.cancelled()


async def test_without_batching_a_request_costs_its_latency_whatever_its_n():
    clock = Recording()
    e = SimEngine({"mode": "echo", "latency_s": BASE}, sleep=clock.sleep)
    await asyncio.gather(e.chat(req(n=8)), e.chat(req()))
    assert clock.waits == [BASE, BASE]
    assert e.batch_count == 0 and not e.batches
    with pytest.raises(ValueError, match="no batching cost model"):
        e.batch_cost([1])


def test_batching_options_are_validated_with_the_field_named():
    with pytest.raises(ValidationError, match=r"batching\.per_token_s"):
        SimOptions(tokens_per_s=100.0, batching={"per_token_s": 0.01})
    with pytest.raises(ValidationError) as err:
        SimOptions(batching={"max_batch": 0})
    assert err.value.errors()[0]["loc"] == ("batching", "max_batch")
    with pytest.raises(ValidationError) as err:
        SimOptions(batching={"window": 0.1})
    assert err.value.errors()[0]["loc"] == ("batching", "window")
