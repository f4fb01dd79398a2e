"""Text helpers shared by ``search`` and ``fetch_url``: HTML to text, slugs, archiving a source."""

from __future__ import annotations

import hashlib
import re
from html.parser import HTMLParser

from conclave.core.workspace import Workspace

__all__ = ["archive_source", "html_to_text", "slug"]

_SKIP = {"script", "style", "noscript", "svg", "template", "iframe", "head"}
_BLOCK = {
    "p", "div", "br", "li", "ul", "ol", "tr", "table", "section", "article", "header", "footer", "h1", "h2",
    "h3", "h4", "h5", "h6", "pre", "blockquote", "dt", "dd", "hr", "nav", "main", "aside", "form",
}  # fmt: skip


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0
        self.title: list[str] = []
        self.in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self.in_title = True
        if tag in _SKIP:
            self.skip += 1
        elif tag in _BLOCK:
            self.parts.append("\n")
        if tag in ("h1", "h2", "h3") and not self.skip:
            self.parts.append("#" * int(tag[1]) + " ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        if tag in _SKIP and self.skip:
            self.skip -= 1
        elif tag in _BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)
        if not self.skip:
            self.parts.append(data)


def html_to_text(html: str) -> tuple[str, str]:
    """(title, text) of an HTML page: scripts and styles dropped, blocks on their own lines."""
    p = _Text()
    try:
        p.feed(html)
        p.close()
    except Exception:  # HTMLParser is lenient; this is for truly broken input  # noqa: BLE001
        pass
    text = "".join(p.parts)
    lines = [re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in text.split("\n")]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return " ".join("".join(p.title).split()), "\n".join(out).strip()


def slug(text: str, max_len: int = 60) -> str:
    s = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:max_len].strip("-")
    return s or hashlib.sha256(text.encode()).hexdigest()[:12]


def archive_source(ws: Workspace, *, title: str, source: str, text: str, note: str = "") -> str:
    """Save a source into ``knowledge_base/sources/`` (the FS-Researcher layout) and return its path.
    The name is derived from the source, so fetching the same source twice rewrites one file."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:8]
    path = f"knowledge_base/sources/{slug(title or source, 50)}-{digest}.md"
    body = f"# {title or source}\n\nsource: {source}\n"
    if note:
        body += f"{note}\n"
    max_text = max(0, ws.max_file_bytes - len(body.encode()) - 64)
    body += "\n" + text.encode()[:max_text].decode("utf-8", errors="ignore") + "\n"
    ws.write(path, body)
    return path
