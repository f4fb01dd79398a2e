"""Steering a run from the console: pause and resume, and approving a pending tool call with
edited arguments, over the steerable-runs API (issue 17)."""

from __future__ import annotations

import httpx

from .conftest import Browser, ready


async def routes(base: str) -> set[str]:
    async with httpx.AsyncClient(base_url=base) as c:
        doc = (await c.get("/openapi.json")).json()
    return {f"{m.upper()} {p}" for p, item in doc["paths"].items() for m in item}


async def test_pause_and_resume_buttons_steer_a_running_run(make_console: object, browser: Browser) -> None:
    page = browser.page
    async with make_console() as c:  # type: ignore[operator]
        have = await routes(c.base)
        run = await c.submit({"kind": "steps", "input": "x", "options": {"n": 30, "sleep": 0.2}})
        await ready(page, c.url(f"#/runs/{run.id}"))
        await page.wait_for_selector("#run-status .status-running")
        assert {"POST /v1/runs/{run_id}/pause", "POST /v1/runs/{run_id}/resume"} <= have
        await page.click("#btn-pause")
        await page.wait_for_selector("#run-status .status-paused", timeout=20_000)
        assert await page.is_hidden("#btn-pause") and await page.is_visible("#btn-resume")
        paused_at = await page.locator("#events li").count()
        await page.click("#btn-resume")
        await page.wait_for_selector("#run-status .status-succeeded", timeout=40_000)
        ids = await page.eval_on_selector_all("#events li", "els => els.map(e => Number(e.dataset.eventId))")
        assert len(ids) > paused_at and ids == list(range(1, len(ids) + 1))


async def test_a_pending_tool_call_is_approved_with_edited_arguments(make_console: object, browser: Browser) -> None:
    page = browser.page
    async with make_console() as c:  # type: ignore[operator]
        have = await routes(c.base)
        assert {"GET /v1/approvals", "POST /v1/runs/{run_id}/approvals"} <= have
        run = await c.submit(
            {
                "kind": "agent",
                "input": "Write notes.",
                "model": "loop",
                "tools": ["fs"],
                "approval": {"write": "always"},
            }
        )
        await ready(page, c.url("#/approvals"))
        card = page.locator(f"article.approval[data-run-id='{run.id}']").first
        await card.wait_for(timeout=20_000)
        assert "write" in await card.locator("h3").inner_text()
        args = card.locator("textarea")
        edited = (await args.input_value()).replace("notes/n0.md", "notes/approved.md")
        assert "notes/approved.md" in edited
        await args.fill(edited)
        await card.locator("button:has-text('Approve with edits')").click()
        await card.locator(".decision:has-text('Decided')").wait_for()
        # A bad edit is refused by the server and shown next to the arguments (the next pending call).
        nxt = page.locator(f"article.approval[data-run-id='{run.id}']").nth(1)
        await nxt.wait_for(timeout=20_000)
        await nxt.locator("textarea").fill('{"path": 42}')
        await nxt.locator("button:has-text('Approve with edits')").click()
        await nxt.locator(".field-error").wait_for()
        await nxt.locator("textarea").fill('{"path": "../outside.md", "content": "x"}')
        await nxt.locator("input").fill("not this one")
        await nxt.locator("button:has-text('Deny')").click()
        await nxt.locator(".decision:has-text('Decided')").wait_for()
        await page.goto(c.url(f"#/runs/{run.id}"))
        await page.wait_for_selector(
            "#events li[data-type='tool.result']:has-text('notes/approved.md')", timeout=30_000
        )
