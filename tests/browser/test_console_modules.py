"""The console's own modules, run in Chromium on the served page: the event-stream parser on
chunks cut at awkward places, the citation linker, the burn-down's arithmetic."""

from __future__ import annotations

import json

from .conftest import Browser, ready

STREAM = (
    ": a comment\r\n"
    'id: 1\r\nevent: run.started\r\ndata: {"id": 1, "type": "run.started"}\r\n\r\n'
    "retry: 1500\n"
    'id: 2\nevent: log\ndata: {"id": 2,\ndata:  "type": "log"}\n\n'
    'id: 3\revent: run.finished\rdata: {"id": 3, "type": "run.finished"}\r\r'
    "data: no id here\n\n"
    'id: 4\nevent: partial\ndata: {"never": "terminated"}\n'
)


async def test_sse_parser_gives_the_same_events_however_the_stream_is_cut(
    make_console: object, browser: Browser
) -> None:
    page = browser.page
    async with make_console(worker=False) as c:  # type: ignore[operator]
        await ready(page, c.url("#/runs"))
        results = await page.evaluate(
            """async (stream) => {
              const { SseParser } = await import('./js/sse.js');
              const runs = [];
              // whole, one character at a time, and cut right after each CR
              const cuts = [[stream], [...stream], stream.split(/(?<=\\r)/)];
              for (const chunks of cuts) {
                const got = [];
                const p = new SseParser((m) => got.push(m));
                for (const c of chunks) p.feed(c);
                runs.push(got);
              }
              return runs;
            }""",
            STREAM,
        )
    expected = [
        {"type": "run.started", "data": '{"id": 1, "type": "run.started"}', "id": "1"},
        {"type": "__retry", "retry": 1500},
        {"type": "log", "data": '{"id": 2,\n "type": "log"}', "id": "2"},
        {"type": "run.finished", "data": '{"id": 3, "type": "run.finished"}', "id": "3"},
        {"type": "message", "data": "no id here", "id": "3"},  # the last event id carries over
    ]
    for got in results:
        assert got == expected, json.dumps(got, indent=1)


async def test_citations_link_only_numbers_with_a_reference_and_not_in_code(
    make_console: object, browser: Browser
) -> None:
    page = browser.page
    report = (
        "# Q\n\n## A\n\nOne [1], both [1, 2], none [3], index a[1], code `x[1]`.\n\n```\nblock [2]\n```\n\n"
        "## References\n\n[1] knowledge_base/sources/a.md — A\n[2] knowledge_base/sources/b.md\n"
    )
    async with make_console(worker=False) as c:  # type: ignore[operator]
        await ready(page, c.url("#/runs"))
        got = await page.evaluate(
            """async (report) => {
              const md = await import('./js/markdown.js');
              const refs = md.references(report);
              const el = md.renderMarkdown(report);
              md.linkCitations(el, refs, (n, p) => Object.assign(document.createElement('a'), { href: '#' + p, textContent: String(n) }));
              return {
                refs: [...refs.entries()],
                links: [...el.querySelectorAll('a')].map((a) => [a.textContent, a.getAttribute('href')]),
                code: [...el.querySelectorAll('code')].map((c) => c.textContent),
              };
            }""",
            report,
        )
    assert got["refs"] == [[1, "knowledge_base/sources/a.md"], [2, "knowledge_base/sources/b.md"]]
    a, b = "#knowledge_base/sources/a.md", "#knowledge_base/sources/b.md"
    assert got["links"] == [
        ["1", a],
        ["1", a],
        ["2", b],
        ["1", a],
        ["knowledge_base/sources/a.md", a],
        ["2", b],
        ["knowledge_base/sources/b.md", b],
    ]
    assert "x[1]" in got["code"] and "block [2]\n" in got["code"]


async def test_burn_down_follows_events_between_ledger_readings(make_console: object, browser: Browser) -> None:
    page = browser.page
    async with make_console(worker=False) as c:  # type: ignore[operator]
        await ready(page, c.url("#/runs"))
        got = await page.evaluate(
            """async () => {
              const { BurnDown } = await import('./js/parts/burndown.js');
              const b = new BurnDown();
              const call = (ts, out) => ({ type: 'model.call', ts, data: { usage: { prompt_tokens: 10, completion_tokens: out } } });
              b.setWindow(new Date(100_000).toISOString(), null);
              b.event(call(101, 5));
              b.event(call(102, 5));
              // The ledger says 12 at t=103 (it counts what the events did not show, e.g. a retry).
              b.reading({ limits: [{ scope: 'run', limit: 'output_tokens', cap: 40, used: 12 }, { scope: 'run/build', limit: 'output_tokens', cap: 20, used: 1 }] }, 103);
              b.event(call(104, 5));
              b.event({ type: 'budget.update', ts: 105, data: { limits: [{ scope: 'run', limit: 'output_tokens', used: 30 }] } });
              b.event({ type: 'tool.call', ts: 106, data: { name: 'search' } });
              return { out: b.series('output_tokens'), calls: b.series('model_calls'), tools: b.series('tool_calls.search'), caps: [...b.caps.entries()] };
            }"""
        )
    assert got["out"] == [[101, 5], [102, 10], [103, 12], [104, 17], [105, 30]]
    assert got["calls"] == [[101, 1], [102, 2], [104, 3]]
    assert got["tools"] == [[106, 1]]
    assert got["caps"] == [["output_tokens", 40]]  # only the run scope's limits get a chart


async def test_long_tool_results_are_folded_and_short_ones_shown(make_console: object, browser: Browser) -> None:
    page = browser.page
    async with make_console(worker=False) as c:  # type: ignore[operator]
        await ready(page, c.url("#/runs"))
        got = await page.evaluate(
            """async () => {
              const { eventItem } = await import('./js/parts/events.js');
              const item = (content) => eventItem({ id: 1, ts: 1, type: 'tool.result', data: { name: 'read', content } });
              const long = item('line of a long file\\n'.repeat(40));
              const short = item('wrote 12 bytes');
              return {
                longFolded: !!long.querySelector('details.fold:not([open]) pre'),
                longSummary: long.querySelector('details.fold summary')?.textContent ?? '',
                shortFolded: !!short.querySelector('details'),
                shortText: short.querySelector('pre')?.textContent ?? '',
              };
            }"""
        )
    assert got["longFolded"] and "(800 characters, 40 lines)" in got["longSummary"], got
    assert not got["shortFolded"] and got["shortText"] == "wrote 12 bytes"
