"""The submit form: the server's 422 details appear next to the fields they name (the form checks
nothing itself), and a valid task becomes a run whose page opens."""

from __future__ import annotations

from pathlib import Path

from .conftest import Browser, ready


async def test_bad_budget_value_shows_the_servers_message_next_to_the_field(
    make_console: object, browser: Browser, shots: Path
) -> None:
    page = browser.page
    async with make_console(worker=False) as c:  # type: ignore[operator]
        await ready(page, c.url("#/submit"))
        await page.fill("#f-input", "How do asyncio tasks differ from threads?")
        await page.fill("#f-budget-usd", "-1")
        await page.click("form.submit button[type=submit]")
        error = page.locator("#f-budget-usd-error")
        await error.wait_for()
        assert "budget.usd" in await error.inner_text() and ">= 0" in await error.inner_text()
        assert await page.get_attribute("#f-budget-usd", "aria-invalid") == "true"
        assert "f-budget-usd-error" in (await page.get_attribute("#f-budget-usd", "aria-describedby") or "")
        assert await page.evaluate("document.activeElement.classList.contains('error-summary')")
        await page.screenshot(path=str(shots / "submit-errors.png"), full_page=True)

        # A value that is not a number goes as typed, and the server's parser names it.
        await page.fill("#f-budget-usd", "")
        await page.fill("#f-budget-model-calls", "many")
        await page.click("form.submit button[type=submit]")
        await page.wait_for_selector("#f-budget-model-calls-error:has-text('integer')")
        assert await page.locator("#f-budget-usd-error").count() == 0  # the old error is gone

        # An option the kind does not know is reported by the kind's validation, next to Options.
        await page.fill("#f-budget-model-calls", "")
        await page.click("details.advanced summary")
        await page.fill("#f-options", '{"no_such_option": 1}')
        await page.click("form.submit button[type=submit]")
        await page.wait_for_selector("#f-options-error:has-text('no_such_option')")
        assert (await c.store.list_runs(tenant="default")).runs == []  # nothing was queued by the bad submissions


async def test_agent_task_submitted_from_the_form_runs_and_its_page_opens(
    make_console: object, browser: Browser
) -> None:
    page = browser.page
    async with make_console() as c:  # type: ignore[operator]
        await ready(page, c.url("#/submit"))
        await page.check("#f-kind-agent")
        assert await page.is_visible("#f-max-steps") and not await page.is_visible("#f-corpus")
        await page.fill("#f-input", "Write notes.")
        await page.fill("#f-model", "loop")
        await page.fill("#f-tools", "fs")
        await page.fill("#f-budget-model-calls", "8")
        await page.fill("#f-budget-tool-calls", "write=5")
        await page.click("form.submit button[type=submit]")
        await page.wait_for_url("**/ui/#/runs/run_*")
        await page.wait_for_selector("#run-status .status-succeeded", timeout=30_000)
        runs = (await c.store.list_runs(tenant="default")).runs
        assert len(runs) == 1
        spec = runs[0].spec
        assert spec.kind == "agent" and spec.tools == ["fs"] and spec.budget is not None
        assert spec.budget.model_calls == 8 and spec.budget.tool_calls == {"write": 5}
        await page.wait_for_selector("figure.budget[data-limit='tool_calls.write']")
