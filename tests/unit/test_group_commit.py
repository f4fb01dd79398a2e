"""Group commit on a real Valkey: commits ready at the same moment leave in one pipeline, each
gets its own reply or error, and a script Redis forgot is loaded again."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ResponseError

from conclave.controller.redis_client import connect
from conclave.controller.redis_commits import GroupCommit
from conclave.controller.redis_server import EmbeddedRedis

ECHO = """
if ARGV[1] == 'bad' then return redis.error_reply('ERR refused ' .. ARGV[2]) end
return {ARGV[1], ARGV[2]}
"""


async def test_commits_ready_together_share_batches_and_each_gets_its_own_reply(redis_server: EmbeddedRedis) -> None:
    r = connect(redis_server.url)
    try:
        group = GroupCommit(r, r.register_script(ECHO))
        replies = await asyncio.gather(*(group.call(["ok", str(i)]) for i in range(60)))
        assert replies == [["ok", str(i)] for i in range(60)]
        assert group.commits == 60 and group.batches < 10  # 60 one by one before
    finally:
        await r.aclose()


async def test_a_lone_commit_goes_on_its_own(redis_server: EmbeddedRedis) -> None:
    r = connect(redis_server.url)
    try:
        group = GroupCommit(r, r.register_script(ECHO))
        for i in range(5):
            assert await group.call(["ok", str(i)]) == ["ok", str(i)]
        assert (group.batches, group.commits) == (5, 5)
    finally:
        await r.aclose()


async def test_an_error_in_one_commit_of_a_batch_fails_only_that_commit(redis_server: EmbeddedRedis) -> None:
    r = connect(redis_server.url)
    try:
        group = GroupCommit(r, r.register_script(ECHO))
        calls = [group.call(["bad" if i == 7 else "ok", str(i)]) for i in range(20)]
        got = await asyncio.gather(*calls, return_exceptions=True)
        assert isinstance(got[7], ResponseError) and "refused 7" in str(got[7])
        assert [g for i, g in enumerate(got) if i != 7] == [["ok", str(i)] for i in range(20) if i != 7]
        assert group.batches < 20
    finally:
        await r.aclose()


async def test_a_batch_after_redis_forgot_the_script_loads_it_again(redis_server: EmbeddedRedis) -> None:
    r = connect(redis_server.url)
    try:
        group = GroupCommit(r, r.register_script(ECHO + "-- forgotten"))
        await r.script_flush()
        replies = await asyncio.gather(*(group.call(["ok", str(i)]) for i in range(30)))
        assert replies == [["ok", str(i)] for i in range(30)]
        assert group.batches < 30
    finally:
        await r.aclose()


@pytest.mark.parametrize("in_flight", [1, 4])
async def test_commits_queued_while_batches_are_out_form_the_next_batch(
    redis_server: EmbeddedRedis, in_flight: int
) -> None:
    r = connect(redis_server.url)
    try:
        group = GroupCommit(r, r.register_script(ECHO), in_flight=in_flight)

        async def run(k: int) -> list[list[str]]:  # a run: one commit after another
            return [await group.call(["ok", f"{k}:{s}"]) for s in range(10)]

        got = await asyncio.gather(*(run(k) for k in range(40)))
        assert got == [[["ok", f"{k}:{s}"] for s in range(10)] for k in range(40)]
        assert group.commits == 400 and group.batches <= 400 / 4
    finally:
        await r.aclose()
