"""The approval policy's precedence and checks, and the conversation a thread run is given."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from conclave.agents.approvals import approval_mode, check_policy, decided_arguments, refused_result
from conclave.controller.thread_context import MAX_ANSWER_CHARS, conversation
from conclave.schema import Approval, ApprovalStatus, ChatMessageIn, Run, RunStatus, TaskSpec
from conclave.tools import ToolRegistry
from conclave.tools.settings import McpServerSettings, ToolSettings

REG = ToolRegistry(ToolSettings(mcp_servers={"bill": McpServerSettings(command="true")}))


class _Mcp:
    """Just what the policy looks at on an MCP tool."""

    name = "bill__pay"
    server = "bill"
    remote_name = "pay"


def mode(policy: dict[str, Any], name: str) -> str:
    t = _Mcp() if name == "bill__pay" else REG.build(name)
    return approval_mode(policy, t, REG.groups())  # type: ignore[arg-type]


def test_the_most_specific_key_wins_and_unnamed_tools_never_wait() -> None:
    policy = {"fs": "always", "read": "never", "*": "always", "mcp:bill": "never", "mcp:bill/pay": "always"}
    assert mode(policy, "read") == "never", "the tool's own key beats its group"
    assert mode(policy, "write") == "always", "the group"
    assert mode(policy, "bill__pay") == "always", "the MCP tool beats its server"
    assert mode(policy, "search") == "always", "the wildcard"
    assert mode({"fs": "always"}, "search") == "never", "a tool no key names never waits"
    assert mode({}, "ask_human") == "always" and mode({"ask_human": "never"}, "ask_human") == "always"
    assert mode({"fs": "never", "web": "always"}, "search") == "always"


def test_a_policy_naming_an_unknown_tool_is_refused_at_submission() -> None:
    check_policy(
        TaskSpec(input="x", approval={"write": "always", "fs": "never", "*": "never", "mcp:bill": "always"}), REG
    )
    with pytest.raises(ValueError, match="'wirte'") as e:
        check_policy(TaskSpec(input="x", approval={"wirte": "always", "mcp:nope": "always"}), REG)
    assert getattr(e.value, "field", None) == "approval" and "'mcp:nope'" in str(e.value)


def _approval(status: ApprovalStatus, **kw: Any) -> Approval:
    return Approval(
        id="apr_1", run_id="r", tool="write", step_key="s", requested_at=datetime.now(UTC), status=status, **kw
    )


def test_what_a_decision_does_to_the_call() -> None:
    assert decided_arguments(_approval(ApprovalStatus.APPROVED), '{"a": 1}') == '{"a": 1}'
    assert decided_arguments(_approval(ApprovalStatus.EDITED, edited_arguments={"a": 2}), '{"a": 1}') == '{"a": 2}'
    assert refused_result(_approval(ApprovalStatus.APPROVED)) is None
    denied = refused_result(_approval(ApprovalStatus.DENIED, reason="no"))
    assert denied is not None and denied.is_error and "denied" in denied.content and ": no" in denied.content
    asked = refused_result(_approval(ApprovalStatus.DENIED, kind="question"))
    assert asked is not None and asked.content.startswith("the person declined to answer")
    expired = refused_result(_approval(ApprovalStatus.EXPIRED, reason="no decision within 5 s"))
    assert expired is not None and "not run" in expired.content and "5 s" in expired.content


def _run(i: int, text: str | list[ChatMessageIn], output: str | None, status: RunStatus = RunStatus.SUCCEEDED) -> Run:
    return Run(id=f"run_{i}", spec=TaskSpec(input=text), status=status, output=output, created_at=datetime.now(UTC))


def test_the_conversation_of_a_thread() -> None:
    runs = [
        _run(1, "first question", "first answer"),
        _run(2, "never answered", None, RunStatus.FAILED),
        _run(3, [ChatMessageIn(role="system", content="be brief"), ChatMessageIn(role="user", content="q3")], "a3"),
        _run(4, "stopped early", "half", RunStatus.PAUSED),
        _run(5, "too long", "x" * (MAX_ANSWER_CHARS + 10), RunStatus.CANCELLED),
    ]
    msgs = conversation(runs)
    assert [(m.role, m.content[:20]) for m in msgs] == [
        ("user", "first question"),
        ("assistant", "first answer"),
        ("user", "q3"),
        ("assistant", "a3"),
        ("user", "stopped early"),
        ("assistant", "half\n\n(a partial ans"),
        ("user", "too long"),
        ("assistant", "x" * 20),
    ]
    assert "was interrupted" in msgs[5].content and "ended cancelled" in msgs[7].content
    assert len(msgs[7].content) < MAX_ANSWER_CHARS + 200
