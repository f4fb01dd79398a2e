"""Checks shared by the research tests."""

from __future__ import annotations

import re

from conclave.agents.research.state import check_report
from conclave.core.workspace import Workspace


def assert_report_resolves(ws: Workspace) -> list[int]:
    """Check report.md independently of the workflow's own checker; returns the citation numbers."""
    report = ws.read("report.md")
    body, sep, refs = report.partition("\n## References")
    assert sep, "report.md has no references list"
    mapping = {int(m.group(1)): m.group(2) for m in re.finditer(r"^\[(\d+)\] (\S+)", refs, re.MULTILINE)}
    cited = [int(n) for group in re.findall(r"(?<![\w\]])\[(\d+(?:, \d+)*)\]", body) for n in group.split(", ")]
    assert cited, "the report cites nothing"
    for n in cited:
        assert n in mapping, f"[{n}] is not in the references"
        assert mapping[n].startswith("knowledge_base/sources/") and ws.exists(mapping[n]), mapping[n]
    sections = re.split(r"^## ", body, flags=re.MULTILINE)[1:]
    assert sections and all("\n".join(s.splitlines()[1:]).strip() for s in sections), "an empty section"
    assert check_report(report, ws).ok
    return cited
