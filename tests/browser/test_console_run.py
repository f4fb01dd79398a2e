"""A run's page: steps arrive live from the event stream and each is shown once, across a server
restart too; the burn-down and the cost breakdown come from the ledger; cancel stops a run; a run
of another tenant is not found."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ._proxy import CuttableProxy
from .conftest import Browser, ready, until


async def event_ids(page: Any) -> list[int]:
    return await page.eval_on_selector_all(
        "#events li[data-event-id]", "els => els.map(e => Number(e.dataset.eventId))"
    )


async def test_agent_run_page_shows_turns_tool_calls_budget_and_cost_live(
    make_console: object, browser: Browser, shots: Path
) -> None:
    page = browser.page
    async with make_console() as c:  # type: ignore[operator]
        run = await c.submit(
            {
                "kind": "agent",
                "input": "Write three notes, then answer.",
                "model": "loop",
                "tools": ["fs"],
                "budget": {"model_calls": 10, "output_tokens": 5000},
            }
        )
        await ready(page, c.url(f"#/runs/{run.id}"))
        # Steps arrive while the run goes on: the first tool call is on the page before the run ends.
        await page.wait_for_selector("#events li[data-type='tool.call']")
        mid = await page.inner_text("#run-status")
        await page.wait_for_selector("#stream-state[data-state='finished']", timeout=30_000)
        await page.wait_for_selector("#run-status .status-succeeded")
        assert mid in ("running", "queued", "succeeded")

        ids = await event_ids(page)
        done = await c.store.get(run.id)
        assert done is not None
        assert ids == list(range(1, done.last_event_id + 1)), ids  # every event, once, in order
        types = await page.eval_on_selector_all("#events li", "els => els.map(e => e.dataset.type)")
        assert types.count("tool.call") == 3 and types.count("tool.result") == 3 and "agent.message" in types
        # A long tool argument is folded behind a summary, and opens.
        fold = page.locator("#events li[data-type='tool.call'] details.fold").first
        await fold.locator("summary").click()
        assert "a long note line" in await fold.locator("pre").inner_text()

        # One burn-down per limit, from the ledger: 4 model calls of 10.
        await page.wait_for_selector("figure.budget[data-limit='model_calls']")
        caption = await page.inner_text("figure.budget[data-limit='model_calls'] figcaption")
        assert "4 of 10 used" in caption, caption
        assert await page.locator("figure.budget[data-limit='output_tokens']").count() == 1
        # The cost breakdown by model, tool, stage and agent.
        by_model = page.locator("table.cost", has=page.locator("caption", has_text="By model"))
        assert "loop" in await by_model.inner_text()
        by_tool = page.locator("table.cost", has=page.locator("caption", has_text="By tool"))
        assert "write" in await by_tool.inner_text()
        await page.screenshot(path=str(shots / "run.png"), full_page=True)


async def test_event_stream_resumes_after_a_dropped_connection_without_showing_an_event_twice(
    make_console: object, browser: Browser
) -> None:
    page = browser.page
    spec = {"kind": "steps", "input": "x", "options": {"n": 14, "sleep": 0.25}}
    async with make_console() as c:  # type: ignore[operator]
        upstream = int(c.base.rsplit(":", 1)[1])
        async with CuttableProxy(upstream).running() as proxy:
            run = await c.submit(spec)
            await ready(page, f"http://127.0.0.1:{proxy.port}/ui/#/runs/{run.id}")
            await until(page, "() => document.querySelectorAll('#events li').length >= 4")
            # The network drops mid-run; the worker goes on writing events the page has not seen.
            proxy.sever()
            await page.wait_for_selector("#stream-state[data-state='reconnecting']")
            before = await event_ids(page)
            await asyncio.sleep(1.5)
            proxy.restore()
            await page.wait_for_selector("#stream-state[data-state='finished']", timeout=40_000)
            done = await c.store.get(run.id)
    assert done is not None and done.status.value == "succeeded"
    # The stream was resumed after the last event shown, not replayed from the start.
    resumed = [r for r in proxy.requests if f"/v1/runs/{run.id}/events" in r.split("\r\n", 1)[0]][1:]
    assert resumed and f"last-event-id: {before[-1]}" in resumed[0].lower(), resumed
    ids = await event_ids(page)
    assert len(before) < done.last_event_id and ids[: len(before)] == before
    assert ids == list(range(1, done.last_event_id + 1)), ids


async def test_cancel_button_cancels_a_running_run(make_console: object, browser: Browser) -> None:
    page = browser.page
    async with make_console() as c:  # type: ignore[operator]
        run = await c.submit({"kind": "steps", "input": "x", "options": {"n": 200, "sleep": 0.2}})
        await ready(page, c.url(f"#/runs/{run.id}"))
        await page.wait_for_selector("#run-status .status-running")
        await page.click("#btn-cancel")
        await page.wait_for_selector("#run-status .status-cancelled", timeout=20_000)
        assert await page.is_hidden("#btn-cancel")
        for _ in range(100):
            got = await c.store.get(run.id)
            if got is not None and got.status.value == "cancelled":
                break
            await asyncio.sleep(0.1)
        assert got is not None and got.status.value == "cancelled"


async def test_another_tenants_run_is_not_found(make_console: object, browser: Browser) -> None:
    page = browser.page
    async with make_console(auth=True, worker=False) as c:  # type: ignore[operator]
        theirs = await c.submit({"kind": "chat", "input": "tenant b's secret question"}, tenant="tenant-b")
        key_a = await c.key("tenant-a")
        await ready(page, c.url("#/signin"))
        await page.fill("#f-key", key_a)
        await page.click("form.signin button[type=submit]")
        # Signed in once the list has loaded: tenant a has no runs, so the empty note shows (a
        # "table.runs, p.empty" selector would wait on the hidden table, first in the page).
        await page.locator("table.runs tbody tr, p.empty").filter(visible=True).first.wait_for()
        await page.goto(c.url(f"#/runs/{theirs.id}"))
        await page.wait_for_selector("[data-state='not-found']")
        assert "no run" in await page.inner_text("[data-state='not-found']")
        assert "secret question" not in await page.content()
        await page.goto(c.url(f"#/runs/{theirs.id}/workspace"))
        await page.wait_for_selector("[data-state='not-found']")
