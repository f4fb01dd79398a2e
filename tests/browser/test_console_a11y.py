"""Accessible basics, checked by axe-core (WCAG 2 A/AA rules: labels, contrast, names, landmarks)
on each page in a real state, and a keyboard-only walk: skip link, navigation, opening a run."""

from __future__ import annotations

from typing import Any

from axe_playwright_python.async_playwright import Axe

from .conftest import Browser, ready, until
from .kinds import source_paths

WCAG = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
    "resultTypes": ["violations"],
}


async def violations(page: Any) -> list[str]:
    results = await Axe().run(page, options=WCAG)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
    ]


async def test_pages_pass_axe_wcag_aa_checks(make_console: object, browser: Browser) -> None:
    page = browser.page
    browser.allow(
        "Executing inline event handler violates the following Content Security Policy"
    )  # see the workspace test
    async with make_console(auth=True) as c:  # type: ignore[operator]
        key = await c.key("default")
        await ready(page, c.url("#/runs"))
        await page.wait_for_selector("form.signin")
        await page.fill("#f-key", "wrong")
        await page.press("#f-key", "Enter")
        await page.wait_for_selector("#signin-error:not(:empty)")
        found = {"sign-in with an error": await violations(page)}

        await page.fill("#f-key", key)
        await page.press("#f-key", "Enter")
        agent = await c.submit(
            {"kind": "agent", "input": "Write notes.", "model": "loop", "tools": ["fs"], "budget": {"model_calls": 9}}
        )
        report = await c.submit({"kind": "report", "input": "A report"})
        await page.wait_for_selector(f"#runs-body tr[data-run-id='{agent.id}']")
        found["runs"] = await violations(page)

        await page.goto(c.url(f"#/runs/{agent.id}"))
        await page.wait_for_selector("#stream-state[data-state='finished']", timeout=30_000)
        await page.wait_for_selector("figure.budget")
        found["run"] = await violations(page)

        await page.goto(c.url(f"#/runs/{report.id}/workspace?file=report.md&source={source_paths()[0]}"))
        await page.wait_for_selector("#source-pane .md")
        found["workspace"] = await violations(page)

        await page.goto(c.url("#/submit"))
        await page.fill("#f-budget-usd", "-1")
        await page.click("form.submit button[type=submit]")
        await page.wait_for_selector("#f-budget-usd-error")
        found["submit with errors"] = await violations(page)
    assert not any(found.values()), found


async def test_keyboard_alone_reaches_the_content_the_navigation_and_a_run(
    make_console: object, browser: Browser
) -> None:
    page = browser.page
    async with make_console() as c:  # type: ignore[operator]
        run = await c.submit({"kind": "steps", "input": "by keyboard", "options": {"n": 2}})
        await ready(page, c.url("#/runs"))
        await page.wait_for_selector(f"#runs-body tr[data-run-id='{run.id}']")
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.className") == "skip"
        assert await page.is_visible(".skip")  # shown when focused
        await page.keyboard.press("Enter")
        assert await page.evaluate("document.activeElement.id") == "main"
        assert "#/runs" in page.url  # the skip link does not change the route

        # Tab through the page to the run's link and open it with Enter.
        for _ in range(30):
            await page.keyboard.press("Tab")
            if await page.evaluate("document.activeElement.textContent") == run.id:
                break
        else:
            raise AssertionError("the run's link is not reachable with Tab")
        await page.keyboard.press("Enter")
        await page.wait_for_selector("#run-status")
        # The page's heading takes focus, so a screen reader starts at the new content.
        await until(page, "() => document.activeElement.tagName === 'H1'")

        # Navigation links are reachable too: shift-tab back to "New run".
        for _ in range(15):
            await page.keyboard.press("Shift+Tab")
            if await page.evaluate("document.activeElement.textContent") == "New run":
                break
        else:
            raise AssertionError("the navigation is not reachable with Shift+Tab")
        await page.keyboard.press("Enter")
        await page.wait_for_selector("form.submit")
        await until(page, "() => document.activeElement.tagName === 'H1'")
