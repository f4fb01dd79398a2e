"""The research workflow driven by a scripted sim model against real Valkey: both stages end to end
on the in-process worker, sections written in parallel, budget exhaustion in stage 1 (stage 2 still
writes), nothing writable (budget_exhausted), crash and resume in each stage, and dig deeper.

The sim model answers by rules on the last message: the workflow ends every agent turn with a role
reminder ("librarian, round 1 of 2, turn 0: …", "writer of section 2, turn 0: …") and every planning
prompt with "(planner)" or "(outliner)", so one script can play every role deterministically.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from conclave.agents.research import run_research
from conclave.agents.research.state import ResearchState
from conclave.cluster.config import ModelSpec
from conclave.cluster.engines.sim import SimEngine
from conclave.cluster.router import LocalRouter
from conclave.controller.redis_server import EmbeddedRedis
from conclave.controller.redis_store import RedisRunStore
from conclave.core.store import LeaseLost
from conclave.core.workspace import Workspace
from conclave.schema import Budget, Run, RunStatus, TaskSpec
from conclave.schema.chat import ChatRequest, ChatResponse
from conclave.tools import SearchSettings, ToolRegistry, ToolSettings, configure
from conclave.tools.search import Hit, SearchTool, embedder

from .._corpora import shared_python_docs
from ._helpers import running_worker, sim_settings, wait_terminal
from ._research import assert_report_resolves
from ._runs import Runs

pytestmark = pytest.mark.redis

QUESTION = "How do asyncio tasks differ from threads?"

CORPUS = {
    "asyncio-tasks.md": "# asyncio tasks\n\nAn asyncio task wraps a coroutine and runs it on the event loop. "
    "Tasks switch only at await points, so one thread runs many tasks cooperatively.",
    "event-loop.md": "# The event loop\n\nThe event loop schedules tasks and callbacks. It runs one callback "
    "at a time and waits for I/O readiness with a selector, so tasks never run in parallel.",
    "threading.md": "# threading\n\nThreads are scheduled preemptively by the operating system. Threads "
    "share memory, so shared data must be protected with a lock.",
    "locks.md": "# Locks\n\nA lock lets one thread at a time enter a critical section, so threads can share "
    "data safely. Queues are another safe way for threads to share data.",
    "gil.md": "# The global interpreter lock\n\nThe GIL lets one thread execute Python bytecode at a time; "
    "threads still help when they wait for I/O.",
    "executor.md": "# run_in_executor\n\nloop.run_in_executor runs blocking work in a thread pool so the "
    "event loop and its tasks keep running.",
    "queues.md": "# queue\n\nThe queue module provides thread-safe queues for producer and consumer threads; "
    "asyncio.Queue is the task-side equivalent.",
    "gather.md": "# asyncio.gather\n\ngather runs tasks concurrently on the event loop and collects their results.",
    "to-thread.md": "# asyncio.to_thread\n\nto_thread runs a blocking function in a separate thread and awaits it "
    "from a task, so threads and tasks work together.",
    "cancel.md": "# Cancelling tasks\n\nA task can be cancelled at an await point; threads cannot be cancelled "
    "from outside.",
    "condition.md": "# Condition variables\n\nA condition lets threads wait until shared data is ready; "
    "the event loop has asyncio.Condition for tasks.",
    "semaphore.md": "# Semaphores\n\nA semaphore limits how many threads or tasks share a resource at once.",
    "selectors.md": "# selectors\n\nThe selectors module waits for I/O readiness, which is how the event "
    "loop schedules tasks that wait for sockets.",
    "futures.md": "# Futures\n\nA Future is a low-level awaitable that represents the eventual result of an "
    "asynchronous operation; a Task is a Future that drives a coroutine.",
    "thread-pool.md": "# ThreadPoolExecutor\n\nA ThreadPoolExecutor runs calls in a pool of worker threads; "
    "submit returns a future for each call.",
    "barrier.md": "# Barriers\n\nA barrier makes a fixed number of threads wait for each other before any of "
    "them continues.",
    "timeouts.md": "# Timeouts\n\nasyncio.wait_for cancels a task that takes longer than its timeout; a thread "
    "waiting on a lock can pass a timeout to acquire.",
    "task-groups.md": "# Task groups\n\nA task group waits for all the tasks created in it and cancels the "
    "others when one of them fails.",
    "thread-local.md": "# Thread-local data\n\nThread-local data has a separate value for each thread, so "
    "threads do not share it.",
}

S1 = (
    "Asyncio tasks are coroutines scheduled by one event loop in one thread and switch only at await "
    "points [1], while threads are switched preemptively by the operating system [3]."
)
S2 = (
    "The event loop runs one callback at a time and waits for I/O with a selector [2]; a made-up "
    "claim cites a source that does not exist [99]."
)


def rules(**over: Any) -> list[dict[str, Any]]:
    base: dict[str, Any] = {
        "planner": {
            "when": r"\(planner\)",
            "content": "1. How does the event loop schedule tasks?\n2. How do threads share data safely?",
        },
        "outliner": {
            "when": r"\(outliner\)",
            "content": "1. Tasks versus threads\n2. The event loop\n3. Sharing data between threads",
        },
        "lib1": {
            "when": r"librarian, round 1 of \d+, turn 0:",
            "tool_calls": [{"name": "search", "arguments": {"query": "run_in_executor thread pool", "max_results": 2}}],
        },
        "lib1b": {
            "when": r"librarian, round 1 of \d+, turn 1:",
            "tool_calls": [
                {
                    "name": "append",
                    "arguments": {
                        "path": "knowledge_base/librarian.md",
                        "content": "- blocking work goes to a thread pool (knowledge_base/sources/)\n",
                    },
                }
            ],
        },
        "lib2": {
            "when": r"librarian, round 2 of \d+, turn 0:",
            "tool_calls": [
                {"name": "search", "arguments": {"query": "global interpreter lock bytecode", "max_results": 2}}
            ],
        },
        "lib": {"when": r"librarian", "content": "gathered"},
        "w1": {
            "when": r"writer of section 1, turn 0:",
            "tool_calls": [{"name": "write", "arguments": {"path": "sections/s1.md", "content": S1}}],
        },
        "w2": {
            "when": r"writer of section 2, turn 0:",
            "tool_calls": [{"name": "write", "arguments": {"path": "sections/s2.md", "content": S2}}],
        },
        "w": {"when": r"writer of section", "content": "done"},
    }
    base.update(over)
    return [v for v in base.values() if v is not None]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    d = tmp_path / "corpus"
    d.mkdir()
    for name, text in CORPUS.items():
        (d / name).write_text(text)
    return d


@pytest.fixture
async def store(redis_server: EmbeddedRedis, redis: Redis, prefix: str) -> AsyncIterator[RedisRunStore]:
    rb = Redis.from_url(redis_server.url)
    s = RedisRunStore(redis, prefix, binary=rb)
    await s.ready()
    yield s
    await rb.aclose()


@pytest.fixture(autouse=True)
def restore_tool_settings() -> Iterator[None]:
    """The worker configures the process-wide tool settings; put the defaults back afterwards."""
    yield
    configure(ToolSettings())


def research_spec(budget: Budget | None = None, **options: Any) -> TaskSpec:
    opts = {"corpus": "mini", "rounds": 2, "results_per_search": 2, "key_questions": 3, **options}
    return TaskSpec(kind="research", input=QUESTION, model="sim", budget=budget, options=opts)


def settings_for(prefix: str, corpus: Path, replies: list[dict[str, Any]], latency: float = 0.0) -> Any:
    return sim_settings(
        prefix,
        models=[
            ModelSpec(name="sim", engine="sim", options={"mode": "rules", "replies": replies, "latency_s": latency})
        ],
        tools=ToolSettings(search=SearchSettings(corpora={"mini": corpus})),
        kinds={},
    )


async def workspace_of(store: RedisRunStore, rid: str) -> Workspace:
    return Workspace(await store.load_workspace(rid))


async def run_on_worker(store: RedisRunStore, url: str, settings: Any, spec: TaskSpec) -> tuple[Run, Any]:
    run = (await store.submit(spec)).run
    async with running_worker(settings, url) as w:
        done = await wait_terminal(store, run.id, timeout=60)
    return done, w


# -- the full path -------------------------------------------------------------------------------


async def test_full_path_writes_a_cited_report_with_sections_in_parallel(
    store: RedisRunStore, redis_server: EmbeddedRedis, prefix: str, corpus: Path
) -> None:
    settings = settings_for(prefix, corpus, rules(), latency=0.05)
    run = (await store.submit(research_spec())).run
    in_flight = 0
    writers_at_once = 0
    async with running_worker(settings, redis_server.url) as w:
        engine = w.router.engines["sim"]  # type: ignore[attr-defined]
        plain = engine.chat

        async def counting(request: ChatRequest) -> ChatResponse:
            nonlocal in_flight, writers_at_once
            writer = "writer of section" in request.messages[-1].text()
            in_flight += writer
            writers_at_once = max(writers_at_once, in_flight)
            try:
                return await plain(request)
            finally:
                in_flight -= writer

        engine.chat = counting
        done = await wait_terminal(store, run.id, timeout=60)
    assert done.status is RunStatus.SUCCEEDED, (done.stop_reason, done.stop_detail)
    assert writers_at_once >= 2, "the section writers never ran at the same time"

    ws = await workspace_of(store, run.id)
    for path in ("index.md", "report_outline.md", "report.md", "logs/research_state.json"):
        assert ws.exists(path), path
    sources = [p for p in ws.list("knowledge_base/sources") if p.endswith(".md")]
    assert len(sources) >= 4
    state = ResearchState.model_validate_json(ws.read("logs/research_state.json"))
    assert state.stage == "done" and all(t.status.value in ("done", "partial") for t in state.todos)
    assert [kq.origin for kq in state.key_questions] == ["question", "model", "model"]
    assert "How does the event loop schedule tasks?" in ws.read("index.md")
    assert all(kq.sources and ws.read(kq.note).count("(source: knowledge_base/sources/") for kq in state.key_questions)
    assert "knowledge_base/librarian.md" in state.librarian_notes  # the librarian's own note is kept

    # three sections: two from the writers' files, one from the evidence (its writer wrote nothing)
    assert [s.title for s in state.sections] == [
        "Tasks versus threads",
        "The event loop",
        "Sharing data between threads",
    ]
    assert [s.origin for s in state.sections] == ["model-file", "model-file", "evidence"]
    assert "[99]" not in ws.read("sections/s2.md") and state.sections[1].detail and "99" in state.sections[1].detail
    report = ws.read("report.md")
    assert "## Tasks versus threads" in report and "switch only at await points" in report
    cited = assert_report_resolves(ws)
    assert min(cited) == 1 and max(cited) == len(set(cited))  # renumbered in reading order

    steps = await store.load_steps(run.id)
    assert "research/write/s1/turn/0/tool/0" in steps and "research/build/r1/search/q3" in steps
    assert ResearchState.model_validate_json(steps["research/write/assemble"]).report is not None
    events = [(e.type, e.data) for e in await store.events(run.id, count=10_000)]
    stages = [(t, d["stage"]) for t, d in events if t.startswith("stage.")]
    assert stages == [
        ("stage.started", "build"),
        ("stage.finished", "build"),
        ("stage.started", "write"),
        ("stage.finished", "write"),
    ]
    finished = {d["stage"]: d for t, d in events if t == "stage.finished"}
    assert finished["build"]["sources"] == len(state.sources) and finished["write"]["sections"] == 3
    assert finished["build"]["budget"]["used"]["model_calls"] >= 1
    agents = {d.get("agent") for t, d in events if t == "agent.stopped"}
    assert {"librarian-r0", "librarian-r1", "writer-s1", "writer-s2", "writer-s3"} <= agents
    assert done.cost is not None and {"build", "write"} <= set(done.cost.by_stage)
    assert {"writer-s1", "writer-s2", "writer-s3", "planner", "outliner"} <= set(done.cost.by_agent)
    assert done.output == report and done.result is not None and done.result["check"]["unresolved"] == []

    # dig deeper: a new run continues on this workspace, searches one page deeper, re-gathers nothing
    deeper = (await store.submit(research_spec(rounds=1, continue_from=run.id))).run
    async with running_worker(settings, redis_server.url):
        done2 = await wait_terminal(store, deeper.id, timeout=60)
    assert done2.status is RunStatus.SUCCEEDED, done2.stop_detail
    ws2 = await workspace_of(store, deeper.id)
    assert set(sources) <= set(ws2.list("knowledge_base/sources"))
    state2 = ResearchState.model_validate_json(ws2.read("logs/research_state.json"))
    assert state2.continued_from == run.id and len(state2.sources) > len(state.sources)
    assert all(kq.searches == 3 for kq in state2.key_questions)  # two rounds before, one now
    ev2 = [(e.type, e.data) for e in await store.events(deeper.id, count=10_000)]
    new = [p for t, d in ev2 if t == "tool.result" and d.get("agent") == "librarian-seed" for p in d["data"]["new"]]
    assert new and not set(new) & set(sources), "a continued run re-gathered a source it had"
    assert_report_resolves(ws2)


# -- budgets -------------------------------------------------------------------------------------


async def test_budget_exhausted_in_stage_one_still_writes_the_report(
    store: RedisRunStore, redis_server: EmbeddedRedis, prefix: str, corpus: Path
) -> None:
    # 8 model calls: build gets 4 (planner + 3 librarian turns in round 1), write gets 3. The USD cap
    # on a free model makes every hold a "0" USD hold, which releasing must survive.
    settings = settings_for(prefix, corpus, rules())
    budget = Budget(model_calls=8, usd=0.5)
    done, _ = await run_on_worker(store, redis_server.url, settings, research_spec(budget=budget))
    assert done.status is RunStatus.SUCCEEDED, done.stop_detail
    assert done.stop_detail and "build: the librarian stopped in round 2" in done.stop_detail
    assert done.result is not None and any(e.startswith("build:") for e in done.result["exhausted"])
    ws = await workspace_of(store, done.id)
    assert_report_resolves(ws)
    state = ResearchState.model_validate_json(ws.read("logs/research_state.json"))
    assert state.todo("build/r1").status.value == "partial" and len(state.sections) >= 1
    # the stop is kept as the ledger's fields, not a message to parse
    stop = next(st for st in state.stops if st.where == "the librarian stopped in round 2")
    assert (stop.stage, stop.limit) == ("build", "model_calls")
    assert done.result["exhausted_limit"] == "model_calls"
    assert done.cost is not None
    limits = {(lim.scope, lim.limit): lim for lim in done.cost.limits}
    assert limits[("run/build", "model_calls")].cap == 4 and limits[("run/build", "model_calls")].used == 4
    assert limits[("run/write", "model_calls")].cap == 3 and limits[("run/write", "model_calls")].used <= 3
    assert limits[("run", "model_calls")].used <= 8
    assert ("run/write/s1", "model_calls") in limits  # each section has its own share of the stage
    events = [(e.type, e.data) for e in await store.events(done.id, count=10_000)]
    build = next(d for t, d in events if t == "stage.finished" and d["stage"] == "build")
    assert build["exhausted"] and build["budget"]["left"]["model_calls"] == 0


async def test_nothing_writable_ends_budget_exhausted(
    store: RedisRunStore, redis_server: EmbeddedRedis, prefix: str, corpus: Path
) -> None:
    settings = settings_for(prefix, corpus, rules())
    spec = research_spec(budget=Budget(tool_calls={"search": 0}), rounds=1)
    done, _ = await run_on_worker(store, redis_server.url, settings, spec)
    assert done.status is RunStatus.BUDGET_EXHAUSTED, (done.status, done.stop_detail)
    assert done.stop_detail and "tool_calls.search" in done.stop_detail
    assert done.result is not None and done.result["exhausted_limit"] == "tool_calls.search"
    ws = await workspace_of(store, done.id)
    assert ws.exists("report.md") and "No section could be written" in ws.read("report.md")


# -- crash and resume ----------------------------------------------------------------------------


class GatedSim(SimEngine):
    """The scripted sim model, plus a gate: a call whose last message matches ``hang_on`` blocks
    forever while the gate is closed (the worker "dies" inside it). Records every call's role."""

    def __init__(self, replies: list[dict[str, Any]], hang_on: str) -> None:
        super().__init__({"mode": "rules", "replies": replies})
        self.hang_on = re.compile(hang_on)
        self.closed = True
        self.entered = asyncio.Event()
        self.roles: list[str] = []

    async def chat(self, request: ChatRequest) -> ChatResponse:
        last = request.messages[-1].text()
        if self.closed and self.hang_on.search(last):
            self.entered.set()
            await asyncio.Event().wait()
        m = re.search(r"\((planner|outliner)\)|\((librarian, round \d+|writer of section \d+)", last)
        self.roles.append((m.group(1) or m.group(2)) if m else "?")
        return await super().chat(request)


class CountingSearch(SearchTool):
    """The real search tool; counts the provider's searches by (query, k), outside the run."""

    def __init__(self, settings: ToolSettings, counts: Counter[tuple[str, int]]) -> None:
        super().__init__(settings)
        self.counts = counts

    def provider(self, corpus: str | None) -> Any:
        inner = super().provider(corpus)
        counts = self.counts

        class Counted:
            name = inner.name

            async def search(self, query: str, k: int) -> list[Hit]:
                counts[(query, k)] += 1
                return await inner.search(query, k)

        return Counted()


def counting_registry(corpus: Path, counts: Counter[tuple[str, int]]) -> ToolRegistry:
    reg = ToolRegistry(ToolSettings(search=SearchSettings(corpora={"mini": corpus})))
    reg.register(lambda s: CountingSearch(s, counts), name="search")
    return reg


async def crash_and_resume(
    runs: Runs, corpus: Path, hang_on: str, settled: tuple[str, ...] = ()
) -> tuple[str, Any, Any, GatedSim, Counter[Any]]:
    """Run until a call matching ``hang_on`` hangs and the steps ``settled`` (parallel siblings)
    have committed, then let another owner take the run over and finish it."""
    counts: Counter[tuple[str, int]] = Counter()
    reg = counting_registry(corpus, counts)
    engine = GatedSim(rules(), hang_on)
    router = LocalRouter({"sim": engine})
    rid = await runs.submit(research_spec())
    first = await runs.attempt(rid, router, owner="worker-1")
    task = asyncio.ensure_future(run_research(first, registry=reg))
    await asyncio.wait_for(engine.entered.wait(), 20)
    for _ in range(400):  # wait (boundedly) for the siblings to commit; nothing is timed
        if all(first.committed(k) for k in settled):
            break
        await asyncio.sleep(0.025)
    assert all(first.committed(k) for k in settled), settled
    before = (Counter(counts), list(engine.roles))
    engine.closed = False
    second = await runs.attempt(rid, router, owner="worker-2")
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, LeaseLost):
        await task
    assert second.resumed and second.attempt == 2
    out = await run_research(second, registry=reg)
    assert out.status is RunStatus.SUCCEEDED, out.detail
    return rid, second, before, engine, counts


async def test_crash_in_stage_one_resumes_without_repeating_calls_or_sources(runs: Runs, corpus: Path) -> None:
    rid, second, (counts_before, roles_before), engine, counts = await crash_and_resume(
        runs, corpus, r"librarian, round 2 of \d+, turn 0:"
    )
    # every search ran once over both attempts: no committed search repeated, no source re-gathered
    assert counts and set(counts.values()) == {1}, counts
    assert counts_before == {k: v for k, v in counts.items() if k in counts_before}
    steps = await runs.store.load_steps(rid)
    agent_searches = [
        k
        for k, v in steps.items()
        if re.fullmatch(r"research/build/r\d+/turn/\d+/tool/\d+", k) and json.loads(v)["name"] == "search"
    ]
    seeds = [k for k in steps if re.fullmatch(r"research/build/r\d+/search/q\d+", k)]
    assert sum(counts.values()) == len(seeds) + len(agent_searches) == 6 + 2
    # the second attempt called the model only from the hung turn on (no planner, no round 1 again)
    after = engine.roles[len(roles_before) :]
    assert "planner" not in after and "librarian, round 1" not in after
    assert after[0] == "librarian, round 2" and second.steps_replayed > 0
    ev = await runs.events(rid)
    keys = [d["idempotency_key"] for t, d in ev if t == "tool.call"]
    assert len(keys) == len(set(keys))
    seeded: list[Any] = [d["data"] for t, d in ev if t == "tool.result" and d.get("agent") == "librarian-seed"]
    new = [p for data in seeded for p in data["new"]]
    assert len(new) == len(set(new))
    assert [t for t, _ in ev].count("run.resumed") == 1
    assert_report_resolves(Workspace(await runs.store.load_workspace(rid)))


async def test_crash_in_stage_two_resumes_the_unfinished_section_only(runs: Runs, corpus: Path) -> None:
    rid, second, (counts_before, roles_before), engine, counts = await crash_and_resume(
        runs, corpus, r"writer of section 2, turn 0:", ("research/write/s1/check", "research/write/s3/check")
    )
    assert counts == counts_before and set(counts.values()) == {1}  # stage 1 fully replayed: no search
    after = engine.roles[len(roles_before) :]
    assert after and set(after) == {"writer of section 2"}, after  # sections 1 and 3 had committed
    assert second.committed("research/write/s1/check") and second.committed("research/write/s3/check")
    ws = Workspace(await runs.store.load_workspace(rid))
    assert "switch only at await points" in ws.read("report.md")
    assert "waits for I/O with a selector" in ws.read("sections/s2.md")  # the resumed writer's draft
    assert_report_resolves(ws)
    ev = await runs.events(rid)
    assert [d["stage"] for t, d in ev if t == "stage.started"] == ["build", "write"]


# -- submission checks ---------------------------------------------------------------------------


def test_submission_checks_name_the_field() -> None:
    from conclave.agents.research import stage_budget
    from conclave.core.kinds import SpecError, validate_spec
    from conclave.schema import SubBudget

    def err(**kw: Any) -> SpecError:
        spec = TaskSpec.model_validate({"kind": "research", "input": QUESTION, **kw})
        with pytest.raises(SpecError) as e:
            validate_spec(spec)
        return e.value

    validate_spec(TaskSpec(kind="research", input=QUESTION, options={"corpus": "python-docs", "rounds": 3}))
    assert err(options={"rounds": 0}).field == "options.rounds"
    assert err(options={"roundz": 2}).field == "options.roundz"
    assert err(options={"corpus": "nope"}).field == "options.corpus"
    assert err(budget={"usd": 1, "scopes": {"gather": {"share": 0.5}}}).field == "budget.scopes"

    split = stage_budget(Budget(model_calls=10), 0.6, sections=2)
    assert split is not None and split.scopes["build"].share == 0.6 and split.scopes["write"].share == 0.4
    assert set(split.scopes["write"].scopes) == {"s1", "s2"}
    own = Budget(usd=1, scopes={"build": SubBudget(share=0.9), "write": SubBudget(share=0.1)})
    assert stage_budget(own, 0.6) == own and stage_budget(None, 0.6) is None


async def test_sections_can_be_drafted_by_an_ensemble(
    store: RedisRunStore, redis_server: EmbeddedRedis, prefix: str, corpus: Path
) -> None:
    """``section_ensemble``: each section is a generator → fuser ensemble over the run's model,
    metered in the section's scope, instead of a writer agent."""
    fused = (
        "Tasks switch only at await points on one event loop [1], while the operating system preempts "
        "threads at any time [2]."
    )
    replies = rules(
        gen={"when": r"Section to write", "content": fused},
        fuse={"when": r"(?s).", "content": fused},
    )
    ensemble = {
        "name": "draft-pair",
        "layers": [
            [{"type": "generator", "model": "sim", "model_type": "conclave", "samples": 2, "max_tokens": 64}],
            [{"type": "fuser", "model": "sim", "model_type": "conclave", "samples": 1, "max_tokens": 64}],
        ],
    }
    settings = settings_for(prefix, corpus, replies)
    run = (await store.submit(research_spec(rounds=1, section_ensemble=ensemble))).run
    async with running_worker(settings, redis_server.url):
        done = await wait_terminal(store, run.id, timeout=60)
    assert done.status is RunStatus.SUCCEEDED, done.stop_detail
    ws = await workspace_of(store, run.id)
    state = ResearchState.model_validate_json(ws.read("logs/research_state.json"))
    assert any(s.origin.startswith("ensemble") for s in state.sections), [s.origin for s in state.sections]
    assert "await points" in ws.read("report.md")
    assert_report_resolves(ws)
    steps = await store.load_steps(run.id)
    assert any(k.startswith("research/write/s") and k.endswith("/draft") for k in steps)
    ensemble_sections = [x for x in state.sections if x.origin.startswith("ensemble")]
    assert done.usage.model_calls >= 2 * len(ensemble_sections)  # a generator request and a fuser call each


# -- the tenant's budget pauses the run ----------------------------------------------------------


async def wait_paused(store: RedisRunStore, rid: str) -> Run:
    for _ in range(600):
        run = await store.get(rid)
        assert run is not None and not run.status.terminal, f"it ended instead of pausing: {run}"
        if run.status is RunStatus.PAUSED:
            return run
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {rid} never paused")


async def test_the_tenants_cap_at_planning_pauses_the_run_and_planning_resumes(
    store: RedisRunStore, redis_server: EmbeddedRedis, prefix: str, corpus: Path
) -> None:
    """An outer-scope (tenant) cap is not the run's own budget: the planner does not fall back to
    the question alone and record a stop; the run pauses, and once the tenant has room the planner
    is asked again (its key questions are used)."""
    from conclave.controller.tenants import TenantAdmin
    from conclave.core.store_tenants import tenant_scope
    from conclave.schema import BudgetLimits, ScopeBudget

    settings = settings_for(prefix, corpus, rules())
    await store.set_budget(tenant_scope("t-res"), ScopeBudget(periods={"none": BudgetLimits(model_calls=0)}))
    async with running_worker(settings, redis_server.url):
        rid = (await store.submit(research_spec(rounds=1), tenant="t-res")).run.id
        paused = await wait_paused(store, rid)
        assert paused.pause_reason == "tenant_budget"
        await TenantAdmin(store).set_tenant_budget(
            "t-res", ScopeBudget(periods={"none": BudgetLimits(model_calls=100)})
        )
        done = await wait_terminal(store, rid, timeout=60)
    assert done.status is RunStatus.SUCCEEDED, done.stop_detail
    ws = await workspace_of(store, rid)
    state = ResearchState.model_validate_json(ws.read("logs/research_state.json"))
    assert not state.stops, state.stops
    assert [kq.origin for kq in state.key_questions] == ["question", "model", "model"]
    assert state.todo("plan").status.value == "done"
    assert_report_resolves(ws)


async def test_the_tenants_cap_while_an_ensemble_drafts_pauses_the_run(
    store: RedisRunStore, redis_server: EmbeddedRedis, prefix: str, corpus: Path
) -> None:
    """A section ensemble refused by the tenant's cap does not leave its section to the evidence:
    the run pauses, and once resumed the ensemble drafts the sections."""
    from conclave.controller.tenants import TenantAdmin
    from conclave.core.store_tenants import tenant_scope
    from conclave.schema import BudgetLimits, ScopeBudget

    fused = "Tasks switch only at await points on one event loop [1], while threads are preempted [2]."
    replies = rules(gen={"when": r"Section to write", "content": fused}, fuse={"when": r"(?s).", "content": fused})
    ensemble = {
        "name": "draft-one",
        "layers": [[{"type": "generator", "model": "sim", "model_type": "conclave", "samples": 1, "max_tokens": 64}]],
    }
    settings = settings_for(prefix, corpus, replies)
    spec = research_spec(rounds=1, section_ensemble=ensemble, plan_with_model=False, builder_steps=1)
    # without the model planning and titling, the only model calls before the drafts are the
    # librarian's one turn
    await store.set_budget(tenant_scope("t-ens"), ScopeBudget(periods={"none": BudgetLimits(model_calls=1)}))
    async with running_worker(settings, redis_server.url):
        rid = (await store.submit(spec, tenant="t-ens")).run.id
        paused = await wait_paused(store, rid)
        assert paused.pause_reason == "tenant_budget"
        steps = await store.load_steps(rid)
        assert not any(k.endswith("/draft") for k in steps), "a refused draft is not committed"
        await TenantAdmin(store).set_tenant_budget(
            "t-ens", ScopeBudget(periods={"none": BudgetLimits(model_calls=100)})
        )
        done = await wait_terminal(store, rid, timeout=60)
    assert done.status is RunStatus.SUCCEEDED, done.stop_detail
    ws = await workspace_of(store, rid)
    state = ResearchState.model_validate_json(ws.read("logs/research_state.json"))
    assert state.sections and all(s.origin.startswith("ensemble") for s in state.sections), [
        s.origin for s in state.sections
    ]
    assert not state.stops, state.stops


# -- digging into the module of the best hits --------------------------------------------------------


@pytest.mark.skipif(embedder() is None, reason="the cpu extra (embedding model) is not installed")
@pytest.mark.parametrize("entries", [12, 0, 2])
async def test_seed_searches_archive_one_overview_of_the_best_hits_module(runs: Runs, entries: int) -> None:
    """On the real pydoc corpus: the first seed search of the question archives an overview of the
    module its best hit is in (its other API entries, one line each), filed under the question and
    quoted like any source; round 2 does not search that module again. ``overview_entries=0`` is
    the old behaviour: only the search's own hits."""
    question = "How do you define enumerations with Python's enum module?"
    reg = ToolRegistry(ToolSettings(search=shared_python_docs()))
    router = LocalRouter({"sim": SimEngine({"mode": "rules", "replies": rules()})})
    spec = TaskSpec(
        kind="research",
        input=question,
        model="sim",
        options={"corpus": "python-docs", "rounds": 2, "key_questions": 1, "overview_entries": entries},
    )
    rid = await runs.submit(spec)
    ctx = await runs.attempt(rid, router)
    out = await run_research(ctx, registry=reg)
    assert out.status is RunStatus.SUCCEEDED, out.detail
    ws = Workspace(await runs.store.load_workspace(rid))
    sources = [p for p in ws.list("knowledge_base/sources") if p.endswith(".md")]
    overviews = [p for p in sources if "source: python-docs/module/enum#entries" in ws.read(p)]
    if entries < 3:  # none, or fewer entries than an overview lists: no overview, and no search spent on one
        assert overviews == []
        reported = sum(
            1
            for e in await runs.store.events(rid, count=10_000)
            if e.type == "tool.result" and e.data["name"] == "search"
        )
        assert (await runs.store.ledger_snapshot(rid)).used[("run", "tool:search")] == reported
        return
    assert len(overviews) == 1
    text = ws.read(overviews[0])
    assert "enum.auto(" in text and "enum.unique(" in text
    state = ResearchState.model_validate_json(ws.read("logs/research_state.json"))
    assert overviews[0] in state.key_questions[0].sources
    assert overviews[0] in state.sources


async def test_a_folder_corpus_spends_no_search_on_an_overview(
    store: RedisRunStore, redis_server: EmbeddedRedis, prefix: str, corpus: Path
) -> None:
    """A folder corpus's files are one entry each, so no overview can come of them: every search
    the run is charged for is one it reports (a search within a file for an overview was charged
    and never reported)."""
    settings = settings_for(prefix, corpus, rules())
    done, _ = await run_on_worker(store, redis_server.url, settings, research_spec())
    assert done.status is RunStatus.SUCCEEDED, done.stop_detail
    reported = sum(
        1 for e in await store.events(done.id, count=10_000) if e.type == "tool.result" and e.data["name"] == "search"
    )
    charged = (await store.ledger_snapshot(done.id)).used[("run", "tool:search")]
    assert reported > 0 and charged == reported, (charged, reported)
