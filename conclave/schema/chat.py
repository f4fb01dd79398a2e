"""OpenAI chat-completions request and response models.

These are the messages every engine speaks and the ``/v1/chat/completions`` endpoint accepts, so that
any OpenAI client works unchanged. Requests are validated strictly at the edge (wrong roles, empty
messages, ``max_tokens < 1``, malformed tool schemas are 400s naming the field); fields the OpenAI API
accepts but Conclave does not act on are accepted and ignored, as vLLM does.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "EngineError",
    "ModelNotFound",
    "NoHealthyReplica",
    "chunks_of",
    "ChatChoice",
    "ChatChunk",
    "ChatChunkChoice",
    "ChatDelta",
    "ChatMessage",
    "ChatRequest",
    "ChatResponse",
    "CompletionUsage",
    "FunctionCall",
    "FunctionDef",
    "PromptTokensDetails",
    "ResponseFormat",
    "ToolCall",
    "ToolDef",
    "new_completion_id",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class _Lenient(BaseModel):
    """OpenAI request objects: unknown fields are tolerated, as the OpenAI API does."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class FunctionCall(_Model):
    name: str
    arguments: str = Field(description="JSON text of the arguments, as the model produced it.")


class ToolCall(_Model):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class TextPart(_Lenient):
    type: Literal["text"]
    text: str


class ChatMessage(_Lenient):
    """One message of a conversation (system, user, assistant with tool calls, or tool result)."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> ChatMessage:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a message with role 'tool' needs tool_call_id")
        if self.role != "assistant" and self.content is None:
            raise ValueError(f"a message with role '{self.role}' needs content")
        if self.role != "assistant" and self.tool_calls:
            raise ValueError("only assistant messages may carry tool_calls")
        return self

    def text(self) -> str:
        """The content as plain text (text parts joined)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class FunctionDef(_Lenient):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str | None = None
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None

    @field_validator("parameters")
    @classmethod
    def _object_schema(cls, v: dict[str, Any]) -> dict[str, Any]:
        if v.get("type", "object") != "object":
            raise ValueError(f"parameters must be a JSON schema of type 'object', got type {v.get('type')!r}")
        props = v.get("properties", {})
        if not isinstance(props, dict):
            raise ValueError("parameters.properties must be an object")
        required = v.get("required", [])
        if not isinstance(required, list) or any(not isinstance(r, str) for r in required):
            raise ValueError("parameters.required must be a list of property names")
        return v


class ToolDef(_Lenient):
    type: Literal["function"] = "function"
    function: FunctionDef


class NamedToolChoice(_Lenient):
    type: Literal["function"] = "function"
    function: dict[str, str]

    @field_validator("function")
    @classmethod
    def _has_name(cls, v: dict[str, str]) -> dict[str, str]:
        if not v.get("name"):
            raise ValueError("tool_choice.function.name is required")
        return v


class JsonSchemaFormat(_Lenient):
    name: str = "response"
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Lenient):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("response_format of type 'json_schema' needs a json_schema")
        return self


class StreamOptions(_Lenient):
    include_usage: bool = False


class ChatRequest(_Lenient):
    """An OpenAI chat-completions request."""

    model: str = Field(default="", max_length=256)
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int = Field(default=1, ge=1, le=128)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: list[ToolDef] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    user: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ChatRequest:
        if isinstance(self.tool_choice, NamedToolChoice):
            known = {t.function.name for t in self.tools or []}
            wanted = self.tool_choice.function["name"]
            if wanted not in known:
                raise ValueError(f"tool_choice names the function {wanted!r}, which is not in tools")
        if self.tool_choice == "required" and not self.tools:
            raise ValueError("tool_choice 'required' needs tools")
        if self.tools:
            names = [t.function.name for t in self.tools]
            dup = {n for n in names if names.count(n) > 1}
            if dup:
                raise ValueError(f"tools: duplicate function names {sorted(dup)}")
        return self

    @property
    def token_limit(self) -> int | None:
        """The completion cap, whichever of the two OpenAI spellings was used."""
        return self.max_completion_tokens or self.max_tokens

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def chosen_tool(self) -> str | None:
        if isinstance(self.tool_choice, NamedToolChoice):
            return self.tool_choice.function["name"]
        return None


class PromptTokensDetails(_Model):
    cached_tokens: int = 0


class CompletionUsage(_Model):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | None = None

    @property
    def cached_tokens(self) -> int:
        return self.prompt_tokens_details.cached_tokens if self.prompt_tokens_details else 0

    @classmethod
    def of(cls, prompt: int, completion: int, cached: int = 0) -> CompletionUsage:
        return cls(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=cached),
        )

    def __add__(self, other: CompletionUsage) -> CompletionUsage:
        return CompletionUsage.of(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cached_tokens + other.cached_tokens,
        )


class AssistantMessage(_Model):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    tool_calls: list[ToolCall] | None = None


FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "cancelled"]


class ChatChoice(_Model):
    index: int
    message: AssistantMessage
    finish_reason: FinishReason | None = "stop"


class ChatResponse(_Model):
    id: str = Field(default_factory=lambda: new_completion_id())
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatChoice]
    usage: CompletionUsage = Field(default_factory=CompletionUsage)
    system_fingerprint: str | None = None

    @property
    def message(self) -> AssistantMessage:
        return self.choices[0].message


class ChatDelta(_Model):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChatChunkChoice(_Model):
    index: int
    delta: ChatDelta
    finish_reason: FinishReason | None = None


class ChatChunk(_Model):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatChunkChoice]
    usage: CompletionUsage | None = None


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


# ------------------------------------------------------------------------------------------------
# What a model call raises, on any side of a process boundary
# ------------------------------------------------------------------------------------------------


class EngineError(RuntimeError):
    """A model call failed. ``retryable`` says whether the same call may succeed on another try
    (an overloaded server, a dead replica), as opposed to a request the engine can never serve;
    ``retry_after_s``, when the server said how long to wait before trying again (``Retry-After``)."""

    def __init__(
        self, message: str, *, retryable: bool = False, status: int = 500, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after_s = retry_after_s

    def __reduce__(self) -> tuple[object, ...]:
        # Errors cross process boundaries (replica → caller) by pickle; keep the flags.
        return (_rebuild_engine_error, (type(self), str(self), self.retryable, self.status, dict(self.__dict__)))


class ModelNotFound(EngineError):
    def __init__(self, name: str, known: list[str]) -> None:
        listed = ", ".join(sorted(known)) or "none"
        super().__init__(f"model {name!r} is not served here; known models: {listed}", status=404)
        self.name = name
        self.known = sorted(known)

    def __reduce__(self) -> tuple[object, ...]:
        return (ModelNotFound, (self.name, self.known))


class NoHealthyReplica(EngineError):
    def __init__(self, name: str, detail: str = "") -> None:
        extra = f": {detail}" if detail else ""
        super().__init__(f"model {name!r} has no healthy replica{extra}", retryable=True, status=503)
        self.name = name
        self.detail = detail

    def __reduce__(self) -> tuple[object, ...]:
        return (NoHealthyReplica, (self.name, self.detail))


def _rebuild_engine_error(
    cls: type[EngineError], message: str, retryable: bool, status: int, state: dict[str, object]
) -> EngineError:
    err = cls.__new__(cls)
    EngineError.__init__(err, message, retryable=retryable, status=status)
    err.__dict__.update(state)
    return err


def chunks_of(response: ChatResponse) -> list[ChatChunk]:
    """A finished response as the chunks a streaming client expects: role, content or tool calls,
    finish reason per choice, then a final usage chunk."""
    out: list[ChatChunk] = []
    for choice in response.choices:
        msg = choice.message
        out.append(
            ChatChunk(
                id=response.id,
                model=response.model,
                created=response.created,
                choices=[ChatChunkChoice(index=choice.index, delta=ChatDelta(role="assistant", content=""))],
            )
        )
        if msg.content:
            out.append(
                ChatChunk(
                    id=response.id,
                    model=response.model,
                    created=response.created,
                    choices=[ChatChunkChoice(index=choice.index, delta=ChatDelta(content=msg.content))],
                )
            )
        if msg.tool_calls:
            calls = [
                {"index": i, "id": tc.id, "type": "function", "function": tc.function.model_dump()}
                for i, tc in enumerate(msg.tool_calls)
            ]
            out.append(
                ChatChunk(
                    id=response.id,
                    model=response.model,
                    created=response.created,
                    choices=[ChatChunkChoice(index=choice.index, delta=ChatDelta(tool_calls=calls))],
                )
            )
        out.append(
            ChatChunk(
                id=response.id,
                model=response.model,
                created=response.created,
                choices=[ChatChunkChoice(index=choice.index, delta=ChatDelta(), finish_reason=choice.finish_reason)],
            )
        )
    out.append(
        ChatChunk(id=response.id, model=response.model, created=response.created, choices=[], usage=response.usage)
    )
    return out
