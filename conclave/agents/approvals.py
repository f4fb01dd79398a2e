"""The task's approval policy, and what a person's decision does to a call.

Policy (``TaskSpec.approval``): keys are a tool's name, a group of the registry (``fs``), an MCP server
(``mcp:<server>``) or one of its tools (``mcp:<server>/<tool>``), or ``*``; values ``always`` / ``never``.
The most specific key wins (tool, then MCP tool, then MCP server or group — ``always`` if groups
disagree —, then ``*``); a tool no key names never waits, and ``ask_human`` always does. Keys are checked
at submission: a misspelt tool would otherwise run unapproved.

Decision → call: ``approved`` runs the call as the model wrote it, ``edited`` with the person's
arguments, ``denied`` and ``expired`` do not run it: the model reads why, as the call's (error) result.
For ``ask_human`` the person's answer is the result.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from conclave.schema import Approval, ApprovalMode, ApprovalStatus, TaskSpec
from conclave.tools.ask_human import ASK_HUMAN
from conclave.tools.base import Tool, ToolResult
from conclave.tools.registry import ToolRegistry

__all__ = ["approval_mode", "check_policy", "decided_arguments", "refused_result"]


def approval_mode(policy: Mapping[str, ApprovalMode], t: Tool, groups: Mapping[str, list[str]]) -> ApprovalMode:
    """Whether calls of ``t`` wait for a person under ``policy``."""
    if t.name == ASK_HUMAN:
        return "always"
    if t.name in policy:
        return policy[t.name]
    server = getattr(t, "server", None)
    if isinstance(server, str):
        remote = getattr(t, "remote_name", "")
        for key in (f"mcp:{server}/{remote}", f"mcp:{server}"):
            if key in policy:
                return policy[key]
    named = [policy[g] for g, members in groups.items() if g in policy and t.name in members]
    if named:
        return "always" if "always" in named else "never"
    return policy.get("*", "never")


def check_policy(spec: TaskSpec, registry: ToolRegistry) -> None:
    """Every key of the approval policy names something that exists (``ValueError`` naming ``approval``)."""
    known = set(registry.names()) | set(registry.groups()) | {"*"}
    unknown = []
    for key in spec.approval:
        if key in known:
            continue
        if key.startswith("mcp:") and key[4:].split("/", 1)[0] in registry.settings.mcp_servers:
            continue
        unknown.append(key)
    if unknown:
        err = ValueError(
            f"approval names unknown tools {', '.join(repr(u) for u in unknown)}; known {registry.describe_known()}"
        )
        err.field = "approval"  # type: ignore[attr-defined]
        raise err


def decided_arguments(approval: Approval, arguments: str) -> str:
    """The arguments the call runs with once approved (a person's edit replaces the model's)."""
    if approval.status is ApprovalStatus.EDITED and approval.edited_arguments is not None:
        return json.dumps(approval.edited_arguments)
    return arguments


def refused_result(approval: Approval) -> ToolResult | None:
    """The call's result when the decision does not let it run; None when it runs."""
    question = approval.kind == "question"
    reason = f": {approval.reason}" if approval.reason else ""
    data: dict[str, Any] = {"approval": approval.status.value, "approval_id": approval.id}
    if approval.status is ApprovalStatus.DENIED:
        if question:
            return ToolResult(f"the person declined to answer{reason}", is_error=True, data=data | {"error": "denied"})
        text = f"error: a person denied this call{reason}. It was not run; do not repeat it unchanged"
        return ToolResult(text, is_error=True, data=data | {"error": "denied"})
    if approval.status is ApprovalStatus.EXPIRED:
        what = "no one answered the question" if question else "no one approved this call; it was not run"
        return ToolResult(
            f"error: {what} ({approval.reason or 'expired'})", is_error=True, data=data | {"error": "expired"}
        )
    return None
