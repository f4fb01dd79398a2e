"""``openai_http``: any OpenAI-compatible chat endpoint (``vllm serve``, llama.cpp's server, a hosted
API, another Conclave) over httpx.

Failures: 408/409/429 and 5xx answers, timeouts and refused connections are raised at once as
*retryable* ``EngineError``s carrying the server's ``Retry-After`` (seconds or an HTTP date), for
the router to retry under the model's policy (``cluster/retry.py``; the engine itself never retries,
so tries do not multiply). Other 4xx answers are the request's fault and are raised with the
server's message and status, not retryable. Usage is the server's own; when streaming, the engine
always asks for ``stream_options.include_usage`` so the final chunk carries it. A server that still
sends no usage gets an estimate (4 characters a token), logged as such, so that budgets are never
charged zero.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from pydantic import Field, field_validator

from conclave.cluster.engine import Engine
from conclave.cluster.engines.options import EngineOptions
from conclave.schema.chat import (
    AssistantMessage,
    ChatChoice,
    ChatChunk,
    ChatChunkChoice,
    ChatDelta,
    ChatRequest,
    ChatResponse,
    CompletionUsage,
    EngineError,
    FunctionCall,
    ToolCall,
    new_completion_id,
)

__all__ = ["OpenAIHttpEngine", "OpenAIHttpOptions", "parse_chunk", "parse_response", "parse_usage"]

logger = logging.getLogger(__name__)

_RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})


class OpenAIHttpOptions(EngineOptions):
    """Where the endpoint is and how long to wait for it (how often to retry is the model's ``retry``)."""

    base_url: str = Field(description="Base URL including the version, e.g. http://127.0.0.1:8001/v1.")
    model: str | None = Field(default=None, description="Model name at the endpoint; default: the spec's name.")
    api_key_env: str | None = Field(
        default=None, description="Name of the environment variable holding the API key (never the key itself)."
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers.")
    timeout_s: float = Field(default=600.0, gt=0, description="Read timeout per request (long generations).")
    connect_timeout_s: float = Field(default=10.0, gt=0)
    max_connections: int = Field(default=64, ge=1)

    @field_validator("base_url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {v!r}")
        return v.rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and (not v or not all(c.isalnum() or c == "_" for c in v)):
            raise ValueError(f"api_key_env must be an environment variable name, got {v!r}")
        return v


# -- lenient parsing of what servers send (they add fields of their own) ------------------------------
def parse_usage(data: Any) -> CompletionUsage | None:
    if not isinstance(data, dict):
        return None
    details = data.get("prompt_tokens_details") or {}
    cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
    return CompletionUsage.of(int(data.get("prompt_tokens") or 0), int(data.get("completion_tokens") or 0), cached)


def _tool_calls(raw: Any) -> list[ToolCall] | None:
    if not raw:
        return None
    return [
        ToolCall(
            id=str(c.get("id") or f"call_{i}"),
            function=FunctionCall(
                name=str((c.get("function") or {}).get("name") or ""),
                arguments=str((c.get("function") or {}).get("arguments") or "{}"),
            ),
        )
        for i, c in enumerate(raw)
    ]


_FINISH = {"stop", "length", "tool_calls", "content_filter", "cancelled"}


def _finish(value: Any) -> Any:
    if value == "function_call":
        return "tool_calls"
    if value == "abort":
        return "cancelled"
    return value if value in _FINISH or value is None else "stop"


def parse_response(data: dict[str, Any], model: str) -> ChatResponse:
    choices = []
    for i, ch in enumerate(data.get("choices") or []):
        msg = ch.get("message") or {}
        choices.append(
            ChatChoice(
                index=int(ch.get("index", i)),
                message=AssistantMessage(content=msg.get("content"), tool_calls=_tool_calls(msg.get("tool_calls"))),
                finish_reason=_finish(ch.get("finish_reason") or "stop"),
            )
        )
    return ChatResponse(
        id=str(data.get("id") or new_completion_id()),
        created=int(data.get("created") or time.time()),
        model=model,
        choices=choices,
        usage=parse_usage(data.get("usage")) or CompletionUsage(),
        system_fingerprint=data.get("system_fingerprint"),
    )


def parse_chunk(data: dict[str, Any], model: str) -> ChatChunk:
    choices = []
    for i, ch in enumerate(data.get("choices") or []):
        d = ch.get("delta") or {}
        choices.append(
            ChatChunkChoice(
                index=int(ch.get("index", i)),
                delta=ChatDelta(
                    role="assistant" if d.get("role") == "assistant" else None,
                    content=d.get("content"),
                    tool_calls=d.get("tool_calls") or None,
                ),
                finish_reason=_finish(ch.get("finish_reason")),
            )
        )
    return ChatChunk(
        id=str(data.get("id") or ""),
        created=int(data.get("created") or time.time()),
        model=model,
        choices=choices,
        usage=parse_usage(data.get("usage")),
    )


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after-ms")
    if value:
        try:
            return float(value) / 1000
        except ValueError:
            pass
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _server_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict) and err.get("message"):
        return str(err["message"])
    if isinstance(err, str):
        return err
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return json.dumps(body)[:500]


class OpenAIHttpEngine(Engine):
    provider = "openai"

    def __init__(self, options: OpenAIHttpOptions | dict[str, Any], *, name: str = "openai_http") -> None:
        self.options = OpenAIHttpOptions.of(options)
        self.name = name
        self.remote_model = self.options.model or name
        self._client: httpx.AsyncClient | None = None

    # -- plumbing -------------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **self.options.headers}
        if self.options.api_key_env:
            key = os.environ.get(self.options.api_key_env)
            if not key:
                raise EngineError(
                    f"{self.name}: the environment variable {self.options.api_key_env} (api_key_env) is not set",
                    status=500,
                )
            headers["Authorization"] = f"Bearer {key}"
        return headers

    @property
    def client(self) -> httpx.AsyncClient:
        # Built on first use, inside the running loop of whoever calls (replica, test, worker).
        if self._client is None:
            o = self.options
            self._client = httpx.AsyncClient(
                base_url=o.base_url,
                timeout=httpx.Timeout(o.timeout_s, connect=o.connect_timeout_s),
                limits=httpx.Limits(max_connections=o.max_connections, max_keepalive_connections=o.max_connections),
            )
        return self._client

    def _body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        body = request.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"stream", "stream_options"})
        body["model"] = self.remote_model
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    async def _send(self, body: dict[str, Any], *, stream: bool) -> httpx.Response:
        """POST once; returns a 2xx response (a streaming one still open), else raises ``EngineError``."""
        headers = self._headers()
        where = f"{self.name}: {self.options.base_url}"
        try:
            req = self.client.build_request("POST", "/chat/completions", json=body, headers=headers)
            response = await self.client.send(req, stream=stream)
        except (httpx.TimeoutException, httpx.TransportError) as e:
            raise EngineError(f"{where} failed: {type(e).__name__}: {e}", retryable=True, status=503) from e
        if response.status_code < 400:
            return response
        if stream:
            await response.aread()
            await response.aclose()
        message = _server_message(response)
        if response.status_code not in _RETRY_STATUSES:
            raise EngineError(f"{where} answered {response.status_code}: {message}", status=response.status_code)
        raise EngineError(
            f"{where} answered {response.status_code}: {message}",
            retryable=True,
            status=response.status_code,
            retry_after_s=_retry_after(response),
        )

    # -- Engine ---------------------------------------------------------------------------------------
    async def chat(self, request: ChatRequest) -> ChatResponse:
        response = await self._send(self._body(request, stream=False), stream=False)
        try:
            data = response.json()
        except ValueError as e:
            raise EngineError(f"{self.name}: the endpoint answered with invalid JSON: {e}", retryable=True) from e
        if not isinstance(data, dict) or not data.get("choices"):
            raise EngineError(f"{self.name}: the endpoint's answer has no choices: {str(data)[:300]}", retryable=True)
        parsed = parse_response(data, self.name)
        if not data.get("usage"):
            parsed.usage = self._estimate(request, "".join(c.message.content or "" for c in parsed.choices))
        return parsed

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """SSE from the endpoint, chunk by chunk. Closing this iterator closes the HTTP response,
        which is how OpenAI-compatible servers learn to abort the generation."""
        response = await self._send(self._body(request, stream=True), stream=True)
        usage: CompletionUsage | None = None
        text: list[str] = []
        cid, created = new_completion_id(), int(time.time())
        try:
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                try:
                    data = json.loads(payload)
                except ValueError as e:
                    raise EngineError(f"{self.name}: bad SSE data from the endpoint: {payload[:200]}") from e
                if isinstance(data, dict) and "error" in data and "choices" not in data:
                    err = data["error"]
                    message = err.get("message") if isinstance(err, dict) else str(err)
                    raise EngineError(f"{self.name}: the endpoint reported mid-stream: {message}", retryable=True)
                chunk = parse_chunk(data, self.name)
                cid, created = chunk.id or cid, chunk.created
                if chunk.usage is not None:
                    usage = chunk.usage
                    chunk.usage = None
                for ch in chunk.choices:
                    if ch.delta.content:
                        text.append(ch.delta.content)
                if chunk.choices:
                    yield chunk
        except httpx.HTTPError as e:
            raise EngineError(f"{self.name}: the stream broke: {type(e).__name__}: {e}", retryable=True) from e
        finally:
            await response.aclose()
        if usage is None:
            usage = self._estimate(request, "".join(text))
        yield ChatChunk(id=cid, created=created, model=self.name, choices=[], usage=usage)

    def _estimate(self, request: ChatRequest, completion: str) -> CompletionUsage:
        prompt = sum(len(m.text()) for m in request.messages)
        logger.warning("%s: the endpoint reported no usage; estimating from text length", self.name)
        return CompletionUsage.of(max(1, prompt // 4), (len(completion) + 3) // 4)

    async def health(self) -> None:
        """The endpoint answers ``GET /models``; a server that is down fails the replica's health check."""
        try:
            response = await self.client.get("/models", headers=self._headers(), timeout=10.0)
        except httpx.HTTPError as e:
            raise EngineError(f"{self.name}: {self.options.base_url} unreachable: {e}", retryable=True) from e
        if response.status_code >= 500:
            raise EngineError(f"{self.name}: {self.options.base_url}/models answered {response.status_code}")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
