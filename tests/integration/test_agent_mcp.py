"""A small MCP server over stdio, written here with the ``mcp`` package, provides tools the agent
calls; bad arguments are caught against the server's JSON schema before the call."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from conclave.agents.loop import run_agent
from conclave.budgets.cost import ledger_cost
from conclave.cluster.engines.sim import SimEngine
from conclave.cluster.router import LocalRouter
from conclave.schema import RunStatus, StopReason, TaskSpec
from conclave.tools import McpServerSettings, ToolRegistry, ToolSettings

from ._runs import Runs

pytestmark = pytest.mark.redis

SERVER = '''
import json, sys
from mcp.server.mcpserver import MCPServer

app = MCPServer("calc")
LOG = sys.argv[1]

@app.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b

@app.tool()
def remember(text: str) -> str:
    """Store a note (a side effect outside the run)."""
    with open(LOG, "a") as f:
        f.write(text + "\\n")
    return "stored"

if __name__ == "__main__":
    app.run()
'''


@pytest.fixture
def calc_server(tmp_path: Path) -> tuple[ToolRegistry, Path]:
    script = tmp_path / "calc_server.py"
    script.write_text(textwrap.dedent(SERVER))
    log = tmp_path / "notes.log"
    settings = ToolSettings(
        mcp_servers={"calc": McpServerSettings(command=sys.executable, args=[str(script), str(log)], timeout_s=30)}
    )
    return ToolRegistry(settings), log


async def test_the_agent_calls_tools_of_a_stdio_mcp_server(runs: Runs, calc_server: tuple[ToolRegistry, Path]) -> None:
    reg, log = calc_server
    replies = [
        {
            "tool_calls": [
                {"name": "calc__add", "arguments": {"a": 2, "b": 3}},
                {"name": "calc__add", "arguments": {"a": "x"}},
            ]
        },
        {"tool_calls": [{"name": "calc__remember", "arguments": {"text": "hello"}}]},
        {"content": "2 + 3 = 5"},
    ]
    engine = SimEngine({"mode": "script", "replies": replies})
    spec = TaskSpec(kind="agent", input="add", model="sim", tools=["mcp:calc"])
    rid, ctx = await runs.start(spec, LocalRouter({"sim": engine}))
    out = await run_agent(ctx, registry=reg)
    assert (out.status, out.stop_reason, out.output) == (RunStatus.SUCCEEDED, StopReason.END_TURN, "2 + 3 = 5")
    results = {(d["turn"], d["index"]): d for t, d in await runs.events(rid) if t == "tool.result"}
    assert results[(0, 0)]["content"] == "5" and not results[(0, 0)]["is_error"]
    bad = results[(0, 1)]
    assert bad["is_error"] and "invalid arguments for tool 'calc__add'" in bad["content"]
    assert "a: 'x' is not of type 'integer'" in bad["content"] and "'b' is a required property" in bad["content"]
    assert results[(1, 0)]["content"] == "stored"
    assert log.read_text() == "hello\n"
    cost = await ledger_cost(ctx.ledger)
    assert cost.total.usage.tool_calls == {"calc__add": 1, "calc__remember": 1}


async def test_one_tool_of_a_server_and_the_schema_the_model_sees(calc_server: tuple[ToolRegistry, Path]) -> None:
    reg, _ = calc_server
    async with reg.open(["mcp:calc/add"]) as tools:
        assert list(tools) == ["calc__add"]
        params = tools["calc__add"].definition().function.parameters
        assert params["required"] == ["a", "b"] and params["properties"]["a"]["type"] == "integer"
    with pytest.raises(ValueError, match="unknown tools 'mcp:nope'"):
        reg.check(["mcp:nope"])
    with pytest.raises(Exception, match="has no tool missing"):
        async with reg.open(["mcp:calc/missing"]):
            pass


async def test_a_server_that_does_not_start_fails_the_run_with_the_reason(runs: Runs) -> None:
    settings = ToolSettings(mcp_servers={"gone": McpServerSettings(command="/nonexistent/mcp-server")})
    spec = TaskSpec(kind="agent", input="x", model="sim", tools=["mcp:gone"])
    _, ctx = await runs.start(spec, LocalRouter({"sim": SimEngine()}))
    out = await run_agent(ctx, registry=ToolRegistry(settings))
    assert (out.status, out.stop_reason) == (RunStatus.FAILED, StopReason.ERROR)
    assert "could not open the tools" in (out.detail or "") and "gone" in (out.detail or "")
