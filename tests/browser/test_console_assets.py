"""The console's files as the API serves and the package ships them: one page and its modules at
/ui without a key (they hold no data), with a strict Content-Security-Policy, every file covered
by the package data, the vendored libraries unchanged."""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path

import httpx
import pytest

from conclave.api.app import create_app
from conclave.api.console import SECURITY_HEADERS, STATIC_DIR
from conclave.controller.redis_server import EmbeddedRedis
from tests._http import serve_http

from .conftest import console_settings

ROOT = Path(__file__).resolve().parents[2]


def test_every_console_file_is_in_the_package_data() -> None:
    """setuptools ships what ``[tool.setuptools.package-data]`` names; a file outside those
    patterns would be missing from an installed console."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = data["conclave.api.console"]
    package = STATIC_DIR.parent
    shipped = {p for pattern in patterns for p in package.glob(pattern) if p.is_file()}
    files = {p for p in STATIC_DIR.rglob("*") if p.is_file()}
    assert files and files == shipped, sorted(str(p.relative_to(package)) for p in files - shipped)


def test_vendored_libraries_match_the_hashes_in_their_readme() -> None:
    vendor = STATIC_DIR / "vendor"
    table = re.findall(r"^\| `([\w.-]+)` \|.*\| `([0-9a-f]{64})` \|$", (vendor / "README.md").read_text(), re.MULTILINE)
    assert {name for name, _ in table} == {"marked.esm.js", "purify.es.js"}
    for name, digest in table:
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, name
    for licence in ("marked.LICENSE.txt", "dompurify.LICENSE.txt"):
        assert (vendor / licence).stat().st_size > 500


@pytest.mark.redis
async def test_console_is_served_without_a_key_with_its_security_headers(
    redis_server: EmbeddedRedis, prefix: str
) -> None:
    settings = console_settings(prefix, auth=True)
    with serve_http(create_app(settings, redis_server.url)) as base:
        async with httpx.AsyncClient(base_url=base) as c:
            r = await c.get("/ui")
            assert r.status_code in (301, 307, 308) and r.headers["location"].endswith("/ui/")
            page = await c.get("/ui/")
            assert page.status_code == 200 and '<script type="module" src="js/main.js">' in page.text
            for name, value in SECURITY_HEADERS.items():
                assert page.headers[name] == value
            assert "script-src 'self'" in page.headers["content-security-policy"]
            js = await c.get("/ui/js/main.js")
            assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
            css = await c.get("/ui/console.css")
            assert css.headers["content-type"].startswith("text/css")
            # The data behind the console still asks for a key.
            assert (await c.get("/v1/runs")).status_code == 401
            # Nothing outside the console's folder is reachable through it.
            for path in ("/ui/../pyproject.toml", "/ui/%2e%2e/mount.py", "/ui/..%2fmount.py", "/ui/js/../../mount.py"):
                r = await c.get(path)
                assert r.status_code == 404 or "mount_console" not in r.text, path


def test_the_page_preloads_every_module() -> None:
    """Without a preload a module is fetched only when its importer has been parsed, one level
    of imports after another; the page names them all so the browser fetches them at once."""
    html = (STATIC_DIR / "index.html").read_text()
    preloaded = set(re.findall(r'<link rel="modulepreload" href="([^"]+)"', html))
    modules = {str(p.relative_to(STATIC_DIR)) for p in STATIC_DIR.rglob("*.js")} - {"js/main.js"}
    assert preloaded == modules
