"""The console in a real browser: Debian's Chromium driven by Playwright (never a downloaded
browser build), against the real API on 127.0.0.1 with real Valkey and an in-process worker.

Each test gets a fresh browser profile, so nothing (a key in sessionStorage, a cache) leaks from
one test to the next. A JavaScript error on a page fails the test that caused it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from conclave.api.app import create_app
from conclave.cluster.config import ModelSpec
from conclave.config import Settings
from conclave.controller.redis_server import EmbeddedRedis
from conclave.controller.redis_store import RedisRunStore
from conclave.controller.service import RunService
from conclave.schema import Run, TaskSpec
from tests._http import serve_http
from tests.integration._helpers import TEST_KINDS, running_worker

CHROMIUM = os.environ.get("CONCLAVE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

#: Models of the console tests: an echoing one, and one that calls the ``write`` tool a few times
#: (slowly enough that a page sees the steps arrive) before it answers.
LOOP_ARGS = {"path": "notes/n{i}.md", "content": "note {i}: " + "a long note line that goes on. " * 20}
MODELS = [
    ModelSpec(name="sim", engine="sim", options={"mode": "echo"}),
    ModelSpec(
        name="loop",
        engine="sim",
        options={"mode": "tool_loop", "tool_name": "write", "tool_arguments": LOOP_ARGS, "steps": 4, "latency_s": 0.3},
    ),
]


@dataclass
class Console:
    """A running API (and worker) and what a test needs to drive it."""

    base: str
    store: RedisRunStore
    settings: Settings
    service: RunService
    tenant_keys: dict[str, str] = field(default_factory=dict)

    def url(self, route: str = "#/runs") -> str:
        return f"{self.base}/ui/{route}"

    async def submit(self, spec: dict[str, Any], tenant: str = "default") -> Run:
        return (await self.store.submit(TaskSpec.model_validate(spec), tenant=tenant)).run

    async def key(self, tenant: str) -> str:
        if tenant not in self.tenant_keys:
            self.tenant_keys[tenant] = (await self.service.create_key(tenant, name=f"console test {tenant}")).key
        return self.tenant_keys[tenant]


def console_settings(prefix: str, **kw: Any) -> Settings:
    base: dict[str, Any] = {
        "key_prefix": prefix,
        "lease_seconds": 2.0,
        "models": MODELS,
        "kinds": {**TEST_KINDS, "report": "tests.browser.kinds:REPORT_KIND"},
    }
    base.update(kw)
    return Settings.model_validate(base)


@pytest.fixture
def make_console(
    redis_server: EmbeddedRedis, redis: Redis, prefix: str
) -> Callable[..., contextlib.AbstractAsyncContextManager[Console]]:
    """``async with make_console(auth=True, worker=False, **settings) as c`` starts the API on a free
    port (and a worker unless ``worker=False``)."""

    @contextlib.asynccontextmanager
    async def start(*, worker: bool = True, port: int | None = None, **kw: Any) -> AsyncIterator[Console]:
        settings = console_settings(prefix, **kw)
        binary = Redis.from_url(redis_server.url)
        store = RedisRunStore(redis, prefix, binary=binary)
        await store.ready()
        try:
            with serve_http(create_app(settings, redis_server.url), port) as base:
                c = Console(base=base, store=store, settings=settings, service=RunService(store, settings))
                if worker:
                    async with running_worker(settings, redis_server.url, name=f"w-{prefix}"):
                        yield c
                else:
                    yield c
        finally:
            await binary.aclose()

    return start


@pytest.fixture(scope="session")
def chromium() -> str:
    if not os.path.isfile(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (scripts/test.sh installs Debian's chromium as root)")
    return CHROMIUM


@pytest.fixture(scope="session")
async def playwright_driver(chromium: str) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    pw = await async_playwright().start()
    yield pw
    await pw.stop()


@dataclass
class Browser:
    page: Any
    context: Any
    errors: list[str]
    allowed: list[str] = field(default_factory=list)

    def allow(self, text: str) -> None:
        """A console error containing ``text`` is what this test provokes (not a bug)."""
        self.allowed.append(text)


@pytest.fixture
async def browser(playwright_driver: Any, tmp_path: Path) -> AsyncIterator[Browser]:
    """A fresh Chromium profile and one page; page errors are collected and fail the test."""
    context = await playwright_driver.chromium.launch_persistent_context(
        str(tmp_path / "profile"),
        executable_path=CHROMIUM,
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": 1280, "height": 900},
        accept_downloads=True,
    )
    context.set_default_timeout(15_000)
    page = context.pages[0] if context.pages else await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))

    def on_console(msg: Any) -> None:
        # A 401/404/422 answer is logged by Chromium as "Failed to load resource"; those are the
        # answers the tests ask for. Anything else logged as an error is a bug of the console.
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            errors.append(f"console error: {msg.text} at {msg.location}")

    page.on("console", on_console)
    b = Browser(page=page, context=context, errors=errors)
    yield b
    await context.close()
    unexpected = [e for e in errors if not any(a in e for a in b.allowed)]
    assert not unexpected, unexpected


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: ``$CONCLAVE_SCREENSHOTS`` when set (docs/console/*.png are copied from
    there), else a temporary folder."""
    where = os.environ.get("CONCLAVE_SCREENSHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        return Path(where)
    return tmp_path_factory.mktemp("console-screens")


async def until(page: Any, expression: str, arg: Any = None, within: float = 15.0) -> None:
    """Wait until ``expression`` (a JavaScript function of ``arg``) is true on the page. Playwright's
    ``wait_for_function`` polls with ``eval``, which the console's CSP forbids; ``evaluate`` does not."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while not await page.evaluate(expression, arg):
        if loop.time() > end:
            raise AssertionError(f"not true after {within} s: {expression}")
        await asyncio.sleep(0.05)


async def ready(page: Any, url: str) -> None:
    """Open a console URL and wait until the console has booted and rendered its route."""
    await page.goto(url)
    await page.wait_for_selector("body[data-ready='1']")
