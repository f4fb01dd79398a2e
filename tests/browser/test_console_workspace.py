"""The workspace page on a real finished run: the file tree, report.md rendered as Markdown with
its numbered citations as links that open the archived source beside it, markup in the report
made harmless, any file viewable, and the tarball downloaded with the key."""

from __future__ import annotations

import asyncio
import io
import tarfile
from pathlib import Path

from .conftest import Browser, ready
from .kinds import source_paths


async def test_report_citations_open_the_archived_source_beside_the_report(
    make_console: object, browser: Browser, shots: Path
) -> None:
    page = browser.page
    # The report's <img onerror> is stripped by the sanitiser; Chromium still reports the handler it
    # refused to compile while parsing the markup inertly (the CSP at work, not an error of ours).
    browser.allow("Executing inline event handler violates the following Content Security Policy")
    async with make_console(auth=True) as c:  # type: ignore[operator]
        key = await c.key("tenant-a")
        run = await c.submit(
            {"kind": "report", "input": "How do asyncio tasks differ from threads?"}, tenant="tenant-a"
        )
        await ready(page, c.url("#/signin"))
        await page.fill("#f-key", key)
        await page.click("form.signin button[type=submit]")
        await page.wait_for_selector("main[data-loaded='runs']")
        await page.goto(c.url(f"#/runs/{run.id}"))
        await page.wait_for_selector("#run-status .status-succeeded", timeout=20_000)
        await page.click("a.button:has-text('Workspace')")

        await page.wait_for_selector("#viewer .md h1")
        assert "report.md" in await page.inner_text("#viewer-h")
        first, second = source_paths()
        tree = await page.inner_text("nav.tree")
        for name in ("index.md", "report.md", "knowledge_base/", "sources/", first.rsplit("/", 1)[1]):
            assert name in tree, name
        # Markup a model might write is not run and not kept (the sanitiser, behind the CSP).
        assert await page.evaluate("window.__xss") is None
        assert await page.locator("#viewer img[onerror], #viewer script").count() == 0

        cites = page.locator("#viewer a.cite")
        numbers = await cites.evaluate_all("els => els.map(e => e.dataset.ref)")
        assert numbers[:3] == ["1", "2", "1"]  # [1], [2], then [1, 2] as two links
        assert "[7]" in await page.inner_text("#viewer .md")  # a number with no reference stays text
        assert await page.locator("#viewer .md a.ref-path").count() == 2  # the references list links too

        await cites.nth(1).click()
        await page.wait_for_selector("#source-pane:not([hidden]) .md h1")
        assert second in await page.inner_text("#source-h")
        assert "preemptively" in await page.inner_text("#source-pane")
        assert "source: python-docs/threading.html" in await page.inner_text("#source-pane")
        assert await page.evaluate("document.activeElement.id") == "source-h"
        assert await page.is_visible("#viewer .md")  # the report stays beside it
        await page.screenshot(path=str(shots / "workspace-report.png"), full_page=True)

        # Another citation replaces the source; "Close source" closes the pane.
        await cites.nth(0).click()
        await page.wait_for_selector(f"#source-h:has-text('{first}')")
        await page.click("#source-pane a:has-text('Close source')")
        await page.wait_for_selector("#source-pane", state="hidden")

        # Any file: a relative link in index.md opens its target; a binary file offers a download.
        await page.click("nav.tree a:has-text('index.md')")
        await page.wait_for_selector("#viewer-h:has-text('index.md')")
        await page.click("#viewer .md a:has-text('a source')")
        await page.wait_for_selector(f"#source-h:has-text('{second}')")
        await page.click("nav.tree a:has-text('data.bin')")
        await page.wait_for_selector("#viewer:has-text('A binary file of 9 bytes')")

        # The tarball, fetched with the Authorization header and saved by the browser.
        async with page.expect_download() as dl:
            await page.click("button:has-text('Download workspace')")
        saved = await (await dl.value).path()
        data = await asyncio.to_thread(Path(saved).read_bytes)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            names = set(tar.getnames())
        assert {f"workspace/{p}" for p in ("report.md", "index.md", "logs/data.bin", first, second)} <= names, names
