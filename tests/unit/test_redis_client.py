"""The service's Redis client packs commands with hiredis, byte for byte as redis-py would, and
falls back to redis-py's packer for the arguments whose encoding redis-py decides."""

from __future__ import annotations

import json

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from conclave.controller.redis_client import PackedConnection, connect
from conclave.controller.redis_server import EmbeddedRedis

COMMANDS: list[tuple[object, ...]] = [
    ("EVALSHA", "a" * 40, 0, "conclave", "run-1", "", "turn:3", json.dumps({"q": "é ✓"}), 2, b"\x00\xff raw"),
    ("SCRIPT LOAD", "return 1"),
    (b"CLIENT SETNAME", "w1"),
    ("SET", "k", 1.1),  # a float: redis-py's text for it
    ("SET", "k", -7),
]


@pytest.mark.parametrize("args", COMMANDS)
def test_a_command_is_packed_as_redis_py_packs_it(args: tuple[object, ...]) -> None:
    ours, theirs = PackedConnection(), Connection()
    assert b"".join(ours.pack_command(*args)) == b"".join(theirs.pack_command(*args))


def test_arguments_redis_py_refuses_are_still_refused() -> None:
    with pytest.raises(DataError, match="bool"):
        PackedConnection().pack_command("SET", "k", True)


async def test_the_service_client_uses_the_packed_connection_and_round_trips(redis_server: EmbeddedRedis) -> None:
    r = connect(redis_server.url)
    try:
        assert r.connection_pool.connection_class is PackedConnection
        await r.set("conclave-test:packed", "é ✓ " * 100)
        assert await r.get("conclave-test:packed") == "é ✓ " * 100
        sha = await r.script_load("return {ARGV[1], #ARGV}")
        assert await r.evalsha(sha, 0, "x", 2, b"\x00") == ["x", 3]
    finally:
        await r.delete("conclave-test:packed")
        await r.aclose()


async def test_a_new_connection_does_not_search_package_metadata_for_redis_pys_version(
    redis_server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis
    import redis.utils

    def scan(name: str) -> str:
        raise AssertionError(f"importlib.metadata.version({name!r}) was called for a new connection")

    monkeypatch.setattr(redis.utils.metadata, "version", scan)
    r = connect(redis_server.url)
    try:
        info = await r.client_info()
        if "lib-name" in info:  # CLIENT SETINFO: Valkey and Redis 7.2+ (Debian's redis-server 7.0 has none)
            assert (info.get("lib-name"), info.get("lib-ver")) == ("redis-py", redis.__version__)
        assert await r.ping()
    finally:
        await r.aclose()
