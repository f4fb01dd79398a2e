"""The runs list: 1,000 runs paginated (the load time is measured and printed, never asserted),
filtered by status, and updated live as runs start and finish."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from .conftest import Browser, ready, until

N_RUNS = 1000


async def rows(page: Any) -> list[str]:
    return await page.eval_on_selector_all("#runs-body tr", "els => els.map(e => e.dataset.runId)")


async def test_list_of_a_thousand_runs_loads_a_page_at_a_time(
    make_console: object, browser: Browser, shots: Path
) -> None:
    page = browser.page
    async with make_console(worker=False) as c:  # type: ignore[operator]
        submitted = []
        for start in range(0, N_RUNS, 50):
            submitted += await asyncio.gather(
                *(c.submit({"kind": "chat", "input": f"question number {i}"}) for i in range(start, start + 50))
            )
        steps = [await c.submit({"kind": "steps", "input": f"steps run {i}"}) for i in range(7)]
        assert len({r.id for r in submitted}) == N_RUNS
        api_first = [r.id for r in (await c.store.list_runs(tenant="default", limit=50)).runs]
        timings = []
        for _ in range(3):  # the first load also fills the HTTP cache; report every one
            await page.goto("about:blank")
            t0 = time.perf_counter()
            await page.goto(c.url("#/runs"))
            await page.wait_for_selector("main[data-loaded='runs'] #runs-body tr")
            wall = time.perf_counter() - t0
            mark = await page.evaluate("performance.getEntriesByName('conclave:runs-rendered').pop()?.startTime")
            timings.append((wall, mark))
        print(
            f"\nruns list with {N_RUNS} runs, first page of 50: "
            + ", ".join(f"{w * 1000:.0f} ms to the table (rendered at {m:.0f} ms after navigation)" for w, m in timings)
        )
        first = await rows(page)
        assert len(first) == 50
        assert first == api_first  # the API's newest 50, in its order
        await page.screenshot(path=str(shots / "runs.png"))
        await page.click("a[rel=next]")
        await until(
            page,
            "(prev) => { const r = document.querySelector('#runs-body tr'); return !!r && r.dataset.runId !== prev; }",
            first[0],
        )
        second = await rows(page)
        assert len(second) == 50 and not set(first) & set(second)
        # The kind filter, where the server has it (its OpenAPI document says so), is done by the server.
        await page.goto(c.url("#/runs"))
        await page.wait_for_selector("main[data-loaded='runs']")
        await page.wait_for_selector("#f-kind")
        await page.fill("#f-kind", "steps")
        await page.press("#f-kind", "Enter")
        await until(page, "() => document.querySelectorAll('#runs-body tr').length === 7")
        assert set(await rows(page)) == {r.id for r in steps} and "kind=steps" in page.url
        # Status filter: none of these runs has succeeded (no worker).
        await page.select_option("#f-status", "succeeded")
        await page.wait_for_selector("p.empty:not([hidden])")
        assert "status=succeeded" in page.url


async def test_runs_list_updates_live_as_a_run_is_submitted_and_finishes(
    make_console: object, browser: Browser, shots: Path
) -> None:
    page = browser.page
    async with make_console() as c:  # type: ignore[operator]
        await c.submit({"kind": "chat", "input": "Say hello", "model": "sim"})
        await c.submit({"kind": "fail", "input": "this one fails"})
        await ready(page, c.url("#/runs"))
        await page.wait_for_selector("main[data-loaded='runs']")
        run = await c.submit(
            {"kind": "steps", "input": "listed live", "model": "sim", "options": {"n": 8, "sleep": 0.5}}
        )
        row = f"#runs-body tr[data-run-id='{run.id}']"
        await page.wait_for_selector(row, timeout=10_000)  # no reload: the list refreshes itself
        await page.wait_for_selector(f"{row} .status-running", timeout=10_000)
        await page.wait_for_selector("#runs-body .status-failed")
        assert "null" not in await page.inner_text("main")  # an empty pager once printed "nullnull"
        await page.screenshot(path=str(shots / "runs-live.png"))
        await page.wait_for_selector(f"{row} .status-succeeded", timeout=20_000)
        assert "listed live" in await page.inner_text(row)
        await page.click(f"{row} a")
        await page.wait_for_selector("#run-status .status-succeeded")
