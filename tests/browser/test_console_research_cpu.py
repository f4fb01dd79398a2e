"""The whole path a person takes, on the real CPU model (SmolLM2-135M) and the python-docs corpus,
offline: a research task submitted from the form, its stage events arriving on the run page, the
report opened when the run finishes, a citation clicked and its archived source read beside it.

Kept small (one round, two key questions, a 16-call budget): the point is the console, not the
prose of a 135M model."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conclave.tools import SearchSettings, ToolSettings, configure

from .conftest import Browser, ready

OPTIONS = {
    "rounds": 1,
    "key_questions": 2,
    "results_per_search": 2,
    "max_sections": 2,
    "max_tokens": 96,
    "tool_choice": "required",
    "min_tool_turns": 1,
    "builder_steps": 2,
    "writer_steps": 2,
    "temperature": 0,
    "seed": 1,
}


@pytest.fixture(scope="module")
def cpu_model() -> object:
    pytest.importorskip("llama_cpp")
    from conclave.cluster.defaults import default_model_spec

    try:
        return default_model_spec()
    except FileNotFoundError as e:
        pytest.skip(str(e))


@pytest.fixture(autouse=True)
def restore_tool_settings() -> Iterator[None]:
    yield
    configure(ToolSettings())


async def test_research_run_from_the_form_to_a_cited_source_on_the_cpu_model(
    make_console: object, browser: Browser, shots: Path, cpu_model: object, tmp_path: Path
) -> None:
    page = browser.page
    tools = ToolSettings(search=SearchSettings(cache_dir=tmp_path / "corpora"))
    async with make_console(models=[cpu_model], tools=tools, lease_seconds=15.0) as c:  # type: ignore[operator]
        await ready(page, c.url("#/submit"))
        assert await page.is_checked("#f-kind-research")
        await page.fill("#f-input", "How do Python's asyncio tasks differ from threads?")
        await page.fill("#f-model", "smollm2-135m")
        await page.fill("#f-corpus", "python-docs")
        await page.fill("#f-rounds", "1")
        await page.fill("#f-budget-model-calls", "16")
        await page.click("details.advanced summary")
        await page.fill("#f-options", json.dumps({k: v for k, v in OPTIONS.items() if k != "rounds"}))
        t0 = time.perf_counter()
        await page.click("form.submit button[type=submit]")
        await page.wait_for_url("**/ui/#/runs/run_*")

        # Stage events arrive while the run goes on.
        await page.wait_for_selector("#events li[data-type='stage.started']", timeout=120_000)
        await page.wait_for_selector("#stages li[data-stage='build']")
        assert await page.inner_text("#run-status") in ("running", "succeeded")
        await page.screenshot(path=str(shots / "research-live.png"), full_page=True)
        # A liveness bound, not a speed check: the run builds the corpus index in this test's own
        # cache first (~2.5 min of embedding on 2 cores), and CI took 256 s of a former 300 s bound.
        await page.wait_for_selector("#stream-state[data-state='finished']", timeout=900_000)
        elapsed = time.perf_counter() - t0
        await page.wait_for_selector("#run-status .status-succeeded")
        stages = await page.eval_on_selector_all("#stages li", "els => els.map(e => [e.dataset.stage, e.className])")
        assert stages == [["build", "done"], ["write", "done"]], stages
        await page.wait_for_selector("figure.budget[data-limit='model_calls']")
        by_stage = page.locator("table.cost", has=page.locator("caption", has_text="By stage"))
        assert "build" in await by_stage.inner_text() and "write" in await by_stage.inner_text()
        print(f"\nresearch from the console on the CPU model: {elapsed:.1f} s from submit to the last event")

        # The report, its citations, and a source opened beside it.
        await page.click("a.button:has-text('Workspace')")
        await page.wait_for_selector("#viewer-h:has-text('report.md')")
        await page.wait_for_selector("#viewer .md h1")
        cite = page.locator("#viewer a.cite").first
        await cite.wait_for()
        target = await cite.get_attribute("title")
        assert target and target.startswith("knowledge_base/sources/")
        await cite.click()
        await page.wait_for_selector("#source-pane:not([hidden]) .md")
        assert target in await page.inner_text("#source-h")
        assert "source: python-docs/" in await page.inner_text("#source-pane .md")
        await page.screenshot(path=str(shots / "research-report.png"), full_page=True)
