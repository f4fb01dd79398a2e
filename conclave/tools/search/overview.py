"""An overview of a document's entries: each entry's signature and summary sentence, in one passage.

Why. A question about a module ("How do you define enumerations with the enum module?") is
answered by the module's API as a whole, but a search returns a few long passages about its
main class and leaves the short entries that hold the other facts (``enum.auto``,
``enum.unique``, ``random.choices``' weights, ``logging.basicConfig``) below the cut: one long
class docstring outranks each of them. Measured on held-out questions, the archived sources held
0.83 of the key facts, and the missing ones sat in such entries of the module the best hits came
from. An overview lists those entries one line each (``enum.auto(value=_auto_null): Instances are
replaced with an appropriate value in Enum class suites.``), so a handful of lines brings the
module's breadth into the knowledge base without archiving a dozen passages.

Only API entries take part: a passage whose first line is a call signature (``name(…)``) and that
has a summary after it. The caller gives the document's passages best first and the entries it
already has (their full text is archived; an overview line would only repeat it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from .text import Hit, entry_of

__all__ = ["OVERVIEW_FRAGMENT", "OVERVIEW_MIN_LINES", "entry_summary", "overview"]

#: The fragment of an overview's source id: ``python-docs/module/enum#entries``.
OVERVIEW_FRAGMENT = "entries"
#: An overview lists at least this many entries, or is not made.
OVERVIEW_MIN_LINES = 3
_SIGNATURE = re.compile(r"^[A-Za-z_][\w.]*\(.*\)")
_FIRST_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=\S)")


def entry_summary(text: str) -> str | None:
    """``signature: first sentence`` of an API entry's passage, or None when the passage does not
    open with a call signature followed by prose (a continuation chunk, a section, a class tree)."""
    first, _, rest = text.strip().partition("\n")
    first = first.strip()
    if not _SIGNATURE.match(first) or len(first) > 300:
        return None
    para = " ".join(rest.strip().split("\n\n", 1)[0].split())
    if not para:
        return None
    summary = _FIRST_SENTENCE.split(para, maxsplit=1)[0].strip()
    if len(summary) < 12:
        return None
    return f"{first}: {summary}"


def overview(
    document: str, ranked: Sequence[Hit], have: Iterable[str], n: int, min_lines: int = OVERVIEW_MIN_LINES
) -> Hit | None:
    """One passage listing up to ``n`` entries of ``document`` (``ranked``: its passages, most
    relevant first), one line each, skipping the entries in ``have``; None when fewer than
    ``min_lines`` entries are left (then the hits already cover the document)."""
    skip = {entry_of(s) for s in have}
    lines: list[str] = []
    for h in ranked:
        entry = entry_of(h.source)
        if entry in skip:
            continue
        line = entry_summary(h.text)
        if line is None:
            continue
        skip.add(entry)
        lines.append(line)
        if len(lines) >= n:
            break
    if len(lines) < min_lines:
        return None
    name = document.rsplit("/", 1)[-1]
    text = "\n\n".join(lines)
    return Hit(f"{name}: entries", f"{document}#{OVERVIEW_FRAGMENT}", text, 0.0, text[:300])
