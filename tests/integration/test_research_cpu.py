"""A research run end to end on the real CPU model (SmolLM2-135M) and the python-docs corpus, offline,
on the in-process worker.

A 135M model cannot be relied on to plan, search or write, so this asserts the mechanics, not the
prose: the run succeeds, the workspace has the FS-Researcher layout, report.md has at least one
section and every citation in it resolves to an archived source, every model call is metered in its
stage, and the checklist in the checkpoint says what was done.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from conclave.agents.research.state import ResearchState
from conclave.controller.redis_server import EmbeddedRedis
from conclave.controller.redis_store import RedisRunStore
from conclave.core.workspace import Workspace
from conclave.schema import Budget, RunStatus, TaskSpec
from conclave.tools import ToolSettings, configure

from .._corpora import shared_python_docs
from ._helpers import running_worker, sim_settings, wait_terminal
from ._research import assert_report_resolves

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def cpu_model() -> object:
    pytest.importorskip("llama_cpp")
    from conclave.cluster.defaults import default_model_spec

    try:
        return default_model_spec()
    except FileNotFoundError as e:
        pytest.skip(str(e))


@pytest.fixture
async def store(redis_server: EmbeddedRedis, redis: Redis, prefix: str) -> AsyncIterator[RedisRunStore]:
    rb = Redis.from_url(redis_server.url)
    s = RedisRunStore(redis, prefix, binary=rb)
    await s.ready()
    yield s
    await rb.aclose()


@pytest.fixture(autouse=True)
def restore_tool_settings() -> Iterator[None]:
    yield
    configure(ToolSettings())


async def test_cpu_model_research_run_writes_a_cited_report(
    store: RedisRunStore, redis_server: EmbeddedRedis, prefix: str, cpu_model: object, tmp_path: Path
) -> None:
    settings = sim_settings(
        prefix,
        models=[cpu_model],
        tools=ToolSettings(search=shared_python_docs()),
        kinds={},
        lease_seconds=15.0,
    )
    spec = TaskSpec(
        kind="research",
        input="How do Python's asyncio tasks differ from threads?",
        model="smollm2-135m",
        budget=Budget(model_calls=16),
        options={
            "corpus": "python-docs",
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
        },
    )
    run = (await store.submit(spec)).run
    t0 = time.perf_counter()
    async with running_worker(settings, redis_server.url):
        done = await wait_terminal(store, run.id, timeout=240)
    elapsed = time.perf_counter() - t0
    assert done.status is RunStatus.SUCCEEDED, (done.stop_reason, done.stop_detail)

    ws = Workspace(await store.load_workspace(run.id))
    for path in ("index.md", "report_outline.md", "report.md"):
        assert ws.exists(path) and ws.read(path).strip(), path
    assert ws.is_dir("knowledge_base")
    sources = [p for p in ws.list("knowledge_base/sources") if p.endswith(".md")]
    assert sources and all("source: python-docs/" in ws.read(p) for p in sources)
    assert_report_resolves(ws)

    state = ResearchState.model_validate_json(ws.read("logs/research_state.json"))
    assert state.stage == "done" and state.report is not None and state.report.ok
    assert 1 <= len(state.sections) <= 2
    assert state.todo("write/assemble").status.value == "done"

    assert done.cost is not None
    usage = done.cost.total.usage
    assert 1 <= usage.model_calls <= 16 and usage.output_tokens > 0
    assert usage.tool_calls.get("search", 0) >= len(state.key_questions)  # a seeded search per key question
    assert {"build", "write"} <= set(done.cost.by_stage)
    events = await store.events(run.id, count=10_000)
    ts = {(e.type, e.data.get("stage")): e.ts for e in events if e.type.startswith("stage.")}
    build_s = ts[("stage.finished", "build")] - ts[("stage.started", "build")]
    write_s = ts[("stage.finished", "write")] - ts[("stage.started", "write")]
    print(
        f"\nresearch on the CPU model: {elapsed:.1f} s wall (build {build_s:.1f} s, write {write_s:.1f} s), "
        f"{usage.model_calls} model calls, {usage.input_tokens} tokens in / {usage.output_tokens} out, "
        f"{len(sources)} sources, {len(state.sections)} sections ({[s.origin for s in state.sections]})"
    )
    print("\n".join(f"  {t.id}: {t.status.value} {t.detail or ''}" for t in state.todos))
