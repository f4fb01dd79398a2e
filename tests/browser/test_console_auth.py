"""Sign-in with an API key when auth is on: a wrong key shows the server's error, a right one
shows the tenant's runs, the key is kept in sessionStorage only, and signing out forgets it."""

from __future__ import annotations

from pathlib import Path

from .conftest import Browser, ready


async def test_wrong_key_shows_the_error_and_a_right_key_signs_in(
    make_console: object, browser: Browser, shots: Path
) -> None:
    page = browser.page
    async with make_console(auth=True, worker=False) as c:  # type: ignore[operator]
        mine = await c.submit({"kind": "chat", "input": "tenant a asks"}, tenant="tenant-a")
        other = await c.submit({"kind": "chat", "input": "tenant b asks"}, tenant="tenant-b")
        key = await c.key("tenant-a")

        await ready(page, c.url("#/runs"))
        await page.wait_for_selector("form.signin")  # no key: the console asks for one
        assert "#/signin" in page.url
        await page.fill("#f-key", "cvk_this-is-not-a-key")
        await page.press("#f-key", "Enter")
        await page.wait_for_selector("#signin-error:has-text('not valid')")
        assert await page.get_attribute("#f-key", "aria-invalid") == "true"
        await page.screenshot(path=str(shots / "signin-error.png"))
        assert await page.evaluate("sessionStorage.length") == 0

        await page.fill("#f-key", key)
        await page.click("form.signin button[type=submit]")
        await page.wait_for_selector(f"#runs-body tr[data-run-id='{mine.id}']")
        assert await page.locator(f"#runs-body tr[data-run-id='{other.id}']").count() == 0
        # The key is in this tab's session only: nowhere in localStorage, cookies or the URL.
        assert await page.evaluate("Object.values(sessionStorage)") == [key]
        assert await page.evaluate("localStorage.length") == 0
        assert not await browser.context.cookies()
        assert key not in page.url

        # A reload keeps the session; signing out forgets the key.
        await page.reload()
        await page.wait_for_selector(f"#runs-body tr[data-run-id='{mine.id}']")
        await page.click("#who button")
        await page.wait_for_selector("form.signin")
        assert await page.evaluate("sessionStorage.length") == 0


async def test_a_revoked_key_in_the_session_sends_the_page_back_to_sign_in(
    make_console: object, browser: Browser
) -> None:
    page = browser.page
    async with make_console(auth=True, worker=False) as c:  # type: ignore[operator]
        new = await c.service.create_key("tenant-a", name="to revoke")
        await ready(page, c.url("#/signin"))
        await page.fill("#f-key", new.key)
        await page.click("form.signin button[type=submit]")
        await page.wait_for_selector("main[data-loaded='runs']")
        assert (await c.service.revoke_key(new.info.id)).revoked
        # The next refresh of the list answers 401: the console drops the key and asks again.
        await page.wait_for_selector("form.signin", timeout=10_000)
        assert "revoked" in await page.inner_text("main")
        assert await page.evaluate("sessionStorage.length") == 0
