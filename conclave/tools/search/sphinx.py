"""Passages from Sphinx-built HTML (Python's documentation as Debian's ``python3-doc`` installs it).

A page is cut where a reader would look something up: at every section heading and at every API
entry (``<dt id="functools.lru_cache">``), so a passage is one function, class, method or
section, titled by its signature or heading and the page it is on, with a source id that is the
page and its anchor (``python-docs/library/functools.html#functools.lru_cache``). Only the page's
main body is read: navigation, sidebars, footers and "¶" permalinks are left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from .text import Passage, is_boilerplate, split_passages

__all__ = ["DOC_SECTIONS", "html_doc_passages", "page_passages"]

#: The parts of Python's documentation that are indexed (relative folders of the HTML root).
DOC_SECTIONS = ("library", "reference", "howto", "tutorial", "faq")

_BLOCK = {"p", "div", "li", "pre", "dd", "blockquote", "table", "tr", "ul", "ol", "section", "dl"}
_SKIP = {"script", "style", "head", "nav"}


@dataclass
class _Block:
    kind: str  # "heading" or "api"
    anchor: str
    title: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)


class _SphinxPage(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[_Block] = [_Block("heading", "")]
        self.current = 0
        self.depth = 0  # open <div> elements
        self.main_at: int | None = None  # depth of the main body's <div>
        self.skip = 0
        self.pre = 0
        self.in_title: str | None = None  # the tag whose text is a block title
        self.section_ids: list[str] = []
        self.dl_stack: list[tuple[bool, int]] = []  # (is an API list, block to return to)
        self.last_dt_block: int | None = None

    @property
    def in_main(self) -> bool:
        return self.main_at is not None and self.main_at > 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "div":
            self.depth += 1
            if self.main_at is None and (a.get("role") == "main" or "body" in a.get("class", "").split()):
                self.main_at = self.depth
                return
        if not self.in_main:
            return
        if tag in _SKIP or (tag == "a" and "headerlink" in a.get("class", "")) or self.skip:
            self.skip += 1
            return
        if tag == "section" and a.get("id"):
            self.section_ids.append(a["id"])
        if tag in ("h1", "h2", "h3", "h4"):
            anchor = self.section_ids[-1] if self.section_ids else ""
            self.blocks.append(_Block("heading", anchor))
            self.current = len(self.blocks) - 1
            self.in_title = tag
            self.last_dt_block = None
            return
        if tag == "dl":
            api = a.get("class", "").split()[:1] == ["py"]
            self.dl_stack.append((api, self.current))
            self.last_dt_block = None
        elif tag == "dt" and self.dl_stack and self.dl_stack[-1][0]:
            if self.last_dt_block is not None and self.last_dt_block == self.current:
                self.blocks[self.current].title.append(" / ")  # another signature of the same entry
            else:
                self.blocks.append(_Block("api", a.get("id", "")))
                self.current = len(self.blocks) - 1
            if a.get("id") and not self.blocks[self.current].anchor:
                self.blocks[self.current].anchor = a["id"]
            self.in_title = "dt"
            return
        elif tag == "dd":
            self.last_dt_block = None
        if tag == "pre":
            self.pre += 1
        if tag == "br":
            self._text("\n")
        elif tag in _BLOCK:
            self._text("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self.depth:
            if self.main_at is not None and self.depth == self.main_at:
                self.main_at = -1  # done: the main body has closed
            self.depth -= 1
        if not self.in_main:
            return
        if self.skip:
            if tag in _SKIP or tag == "a":
                self.skip -= 1
            return
        if tag == "section" and self.section_ids:
            self.section_ids.pop()
        if self.in_title is not None and tag == self.in_title:
            if tag == "dt":
                self.last_dt_block = self.current
            self.in_title = None
            return
        if tag == "dl" and self.dl_stack:
            api, back = self.dl_stack.pop()
            if api:
                self.current = back
            self.last_dt_block = None
        if tag == "pre" and self.pre:
            self.pre -= 1
        if tag in _BLOCK:
            self._text("\n\n")

    def handle_data(self, data: str) -> None:
        if not self.in_main or self.skip:
            return
        if self.in_title is not None:
            self.blocks[self.current].title.append(data)
        else:
            self._text(data if self.pre else re.sub(r"\s+", " ", data))

    def _text(self, s: str) -> None:
        self.blocks[self.current].text.append(s)


def _squash(parts: list[str]) -> str:
    return re.sub(r"\s+", " ", "".join(parts)).strip().rstrip("¶").strip()


def _body(parts: list[str]) -> str:
    text = "".join(parts)
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return "\n\n".join(p.strip() for p in text.split("\n\n") if p.strip())


def page_passages(html: str, rel: str, prefix: str = "python-docs") -> list[Passage]:
    """The passages of one Sphinx page; ``rel`` is its path under the documentation root."""
    parser = _SphinxPage()
    parser.feed(html)
    parser.close()
    page = next((_squash(b.title) for b in parser.blocks if b.kind == "heading" and b.title), rel)
    short = page.split(" — ")[0].strip()
    out: list[Passage] = []
    for b in parser.blocks:
        text = _body(b.text)
        if not text:
            continue
        head = _squash(b.title)
        if b.kind == "api":
            title = f"{head} ({short})" if short and short not in head else head
        elif head and head != page:
            title = f"{page} › {head}"
        else:
            title = page
        source = f"{prefix}/{rel}" + (f"#{b.anchor}" if b.anchor else "")
        body = f"{head}\n\n{text}" if b.kind == "api" else text
        out += [p for p in split_passages(title, source, body) if not is_boilerplate(p.text)]
    return out


def html_doc_passages(root: Path, sections: tuple[str, ...] = DOC_SECTIONS) -> list[Passage]:
    """Every page of the indexed ``sections`` under ``root`` (the HTML documentation's folder)."""
    out: list[Passage] = []
    for section in sections:
        folder = root / section
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*.html")):
            if path.is_symlink() or not path.is_file():
                continue
            rel = str(path.relative_to(root))
            out += page_passages(path.read_text(errors="replace"), rel)
    return out
