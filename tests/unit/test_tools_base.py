"""Tool base, @tool, registry and the file tools on an in-memory workspace."""

from __future__ import annotations

import json
from typing import Annotated

import pytest
from pydantic import Field

from conclave.core.kinds import SpecError, validate_spec
from conclave.core.workspace import Workspace
from conclave.schema import TaskSpec
from conclave.tools import ToolContext, ToolRegistry, check_tools, idempotency_key, tool
from conclave.tools.base import execute
from conclave.tools.fs import EditTool, GrepTool, LsTool, ReadTool, WriteTool


def ctx(files: dict[str, bytes] | None = None) -> ToolContext:
    return ToolContext(workspace=Workspace(files), run_id="run_1", step_key="turn/0", call_index=0)


def test_idempotency_key_is_stable_and_distinct() -> None:
    k = idempotency_key("run_1", "turn/3", 0)
    assert k == idempotency_key("run_1", "turn/3", 0) and len(k) == 32
    assert len({k, idempotency_key("run_1", "turn/3", 1), idempotency_key("run_2", "turn/3", 0)}) == 3
    assert ctx().idempotency_key == idempotency_key("run_1", "turn/0", 0)


async def test_function_tool_schema_from_type_hints_and_sync_functions_run_in_a_thread() -> None:
    @tool
    def scale(x: Annotated[float, Field(description="the value")], factor: int = 2) -> dict[str, float]:
        """Multiply a number.

        Longer text that is not part of the description."""
        return {"y": x * factor}

    d = scale.definition().function
    assert d.name == "scale" and d.description == "Multiply a number."
    assert d.parameters["required"] == ["x"] and d.parameters["properties"]["x"]["description"] == "the value"
    assert "title" not in d.parameters
    r = await execute(scale, '{"x": 1.5, "factor": 4}', ctx())
    assert not r.is_error and json.loads(r.content) == {"y": 6.0}
    bad = await execute(scale, {"x": "abc", "bogus": 1}, ctx())
    assert bad.is_error and "x: Input should be a valid number" in bad.content and "bogus: Extra inputs" in bad.content


async def test_a_crashing_tool_is_an_error_result_not_a_crash() -> None:
    @tool(name="boom")
    async def explode() -> str:
        raise KeyError("inner")

    r = await execute(explode, None, ctx())
    assert r.is_error and "tool 'boom' failed: KeyError" in r.content


async def test_file_tools() -> None:
    c = ctx({"a.md": b"one\ntwo\nthree\ntwo\n"})
    r = await execute(ReadTool(), {"path": "a.md", "offset": 2, "limit": 2}, c)
    assert r.content == "a.md: lines 2-3 of 4 (read on with offset=4)\n2\ttwo\n3\tthree"
    r = await execute(EditTool(), {"path": "a.md", "old": "two", "new": "2"}, c)
    assert r.is_error and "occurs 2 times" in r.content
    r = await execute(EditTool(), {"path": "a.md", "start_line": 2, "end_line": 3, "new": "middle"}, c)
    assert not r.is_error and c.workspace.read("a.md") == "one\nmiddle\ntwo\n"
    r = await execute(EditTool(), {"path": "a.md", "new": "x"}, c)
    assert r.is_error and "give either old" in r.content
    r = await execute(GrepTool(), {"pattern": "("}, c)
    assert r.is_error and "invalid regular expression" in r.content
    r = await execute(GrepTool(), {"pattern": "o", "max_matches": 1}, c)
    assert r.content.startswith("a.md:1: one") and "1 matches shown" in r.content
    r = await execute(WriteTool(), {"path": "../../etc/x", "content": "x"}, c)
    assert r.is_error and "leaves the workspace" in r.content
    r = await execute(WriteTool(), {"path": "big", "content": "x" * (5 * 1024 * 1024)}, c)
    assert r.is_error and "a file may hold" in r.content
    r = await execute(LsTool(), {}, c)
    assert r.content == "a.md  15 B, 3 lines"
    r = await execute(ReadTool(), {"path": "missing.md"}, c)
    assert r.is_error and "no file 'missing.md'" in r.content


def test_registry_groups_and_unknown_names() -> None:
    reg = ToolRegistry()
    assert reg.resolve(["fs", "read", "python"]) == ["ls", "read", "write", "append", "edit", "grep", "python"]
    with pytest.raises(ValueError, match="unknown tools 'serach', 'mcp:x'; known tools: .*search") as e:
        reg.resolve(["serach", "fs", "mcp:x"])
    assert getattr(e.value, "field", None) == "tools"
    check_tools(["fs", "web"])
    with pytest.raises(ValueError):
        check_tools(["nope"])


def test_agent_specs_are_validated_at_submission() -> None:
    validate_spec(TaskSpec(kind="agent", input="x", tools=["fs"], options={"tool_choice": "required"}))
    with pytest.raises(SpecError, match="tools: unknown tools 'fss'") as e:
        validate_spec(TaskSpec(kind="agent", input="x", tools=["fss"]))
    assert e.value.field == "tools"
    with pytest.raises(SpecError, match="options.max_tokens"):
        validate_spec(TaskSpec(kind="agent", input="x", options={"max_tokens": 0}))
