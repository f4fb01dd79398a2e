"""Structured output shared by the engines that generate in the replica (llama.cpp, vLLM).

A tool call is made in two constrained steps (DESIGN.md, measured on a 135M model): first the
function *name*, chosen under a constraint that admits only the offered names (plus ``none`` for
``tool_choice="auto"``), then its arguments under the function's JSON schema with every free string
bounded (``maxLength``), so a small model cannot ramble inside one until ``max_tokens``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from conclave.schema.chat import ChatRequest, FunctionCall, FunctionDef, ToolCall

__all__ = ["NO_TOOL", "ToolMenu", "bound_strings", "strict_json", "tool_call", "tool_menu"]

#: The choice that means "answer in text" when the request leaves the tool to the model.
NO_TOOL = "none"


def bound_strings(schema: dict[str, Any], max_length: int) -> dict[str, Any]:
    """A copy of ``schema`` in which every free string (no enum, const, pattern or format, no
    maxLength) gets ``maxLength``: a small model otherwise keeps writing inside a string."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: walk(v) for k, v in node.items()}
            if node.get("type") == "string" and not {"enum", "const", "pattern", "format", "maxLength"} & node.keys():
                node["maxLength"] = max_length
            return node
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    out: dict[str, Any] = walk(schema)
    return out


@dataclass
class ToolMenu:
    """Step one of a tool call: the names the model may answer with, and the question asked."""

    tools: dict[str, FunctionDef]
    names: list[str]
    question: str

    def pick(self, answer: str) -> FunctionDef | None:
        """The function the model named (``None`` = answer in text); an unknown name is the first tool."""
        name = answer.strip()
        if name == NO_TOOL:
            return None
        return self.tools.get(name, next(iter(self.tools.values())))


def tool_menu(request: ChatRequest) -> ToolMenu | FunctionDef:
    """The function ``tool_choice`` names, else the menu to choose from (``none`` included under ``auto``)."""
    assert request.tools is not None
    tools = {t.function.name: t.function for t in request.tools}
    named = request.chosen_tool()
    if named:
        return tools[named]
    names = list(tools) + ([NO_TOOL] if request.tool_choice in (None, "auto") else [])
    listing = ", ".join(f"{n} ({f.description})" if f.description else n for n, f in tools.items())
    if NO_TOOL in names:
        listing += f", or {NO_TOOL} (no function needed)"
    return ToolMenu(tools, names, f"Which function fits the user's request? {listing}")


def strict_json(text: str) -> str:
    """Generated arguments as strictly valid JSON. Grammars admit raw control characters inside
    strings; they are accepted here and escaped. ``ValueError`` when the text is not JSON at all."""
    return json.dumps(json.loads(text, strict=False), ensure_ascii=False)


def tool_call(name: str, arguments: str) -> ToolCall:
    return ToolCall(id=f"call_{uuid.uuid4().hex[:16]}", function=FunctionCall(name=name, arguments=arguments))
