"""Serving the console's static files under ``/ui`` with headers that confine what a page may do.

The files are public (they hold no data; every datum comes from the API, which asks for a key), so
the mount needs no authentication. The pages render text that models wrote (reports, tool
results), so a strict Content-Security-Policy is the second line behind the sanitiser: scripts,
styles and connections only from this origin, no inline script, no plugins, no framing.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Final

from fastapi import FastAPI
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

__all__ = ["CONSOLE_PATH", "SECURITY_HEADERS", "STATIC_DIR", "ConsoleFiles", "mount_console"]

#: Where the console lives on the API's origin (``conclave up`` prints ``<api>/ui``).
CONSOLE_PATH: Final = "/ui"

#: The package folder whose files are served (shipped as package data).
STATIC_DIR: Final = Path(__file__).resolve().parent / "static"

#: Sent with every console file. ``connect-src 'self'`` is what lets the pages call the API (and
#: nothing else); ``img-src`` allows ``blob:`` for downloads and ``data:`` for inline SVG icons.
SECURITY_HEADERS: Final[dict[str, str]] = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate (ETag) so an upgraded package is seen at once
}

# ES modules load only with a JavaScript MIME type; some systems map ".js" to something else.
mimetypes.add_type("text/javascript", ".js")


class ConsoleFiles(StaticFiles):
    """Starlette's static files, plus the console's security headers on every answer."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


def mount_console(app: FastAPI, path: str = CONSOLE_PATH) -> None:
    """Serve the console at ``path`` (``/ui/`` is its page; ``/ui`` redirects there)."""
    if not (STATIC_DIR / "index.html").is_file():
        raise RuntimeError(f"the console's files are missing from the package ({STATIC_DIR})")
    app.mount(path, ConsoleFiles(directory=STATIC_DIR, html=True), name="console")
