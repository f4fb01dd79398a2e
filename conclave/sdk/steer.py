"""Steering in the SDK: ``client.threads``, ``client.approvals``, and ``pause`` / ``resume`` / ``steps`` /
``fork`` on ``client.runs`` — sync and async, over the routes of ``docs/steering.md``.

Each call is written once as a request description (method, path, body, how to read the answer) that
the sync and the async sub-clients both execute.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from conclave.schema import (
    Approval,
    ApprovalDecisionResponse,
    ApprovalStatus,
    Budget,
    ChatMessageIn,
    Decision,
    MultitaskPolicy,
    Run,
    RunControlResponse,
    StepListing,
    Thread,
    ThreadMessageResponse,
    ThreadPage,
    ThreadRuns,
)

from .errors import error_for

__all__ = ["AsyncApprovals", "AsyncSteerRuns", "AsyncThreads", "Approvals", "SteerRuns", "Threads"]

T = TypeVar("T")


@dataclass
class _Req(Generic[T]):
    method: str
    path: str
    read: Callable[[Any], T]
    json: Any = None
    params: dict[str, Any] = field(default_factory=dict)

    def finish(self, r: httpx.Response) -> T:
        if not r.is_success:
            try:
                body = r.json()
            except ValueError:
                body = None
            raise error_for(r.status_code, body, f"HTTP {r.status_code}: {r.text[:200]}")
        return self.read(r.json())

    def kwargs(self) -> dict[str, Any]:
        return {"json": self.json, "params": {k: v for k, v in self.params.items() if v is not None}}


def _p(*parts: str) -> str:
    return "/".join(quote(p, safe="") for p in parts)


def _body(**kw: Any) -> dict[str, Any]:
    """A JSON body of the given fields that are set (models dumped)."""
    out: dict[str, Any] = {}
    for k, v in kw.items():
        if v is None:
            continue
        if isinstance(v, Budget):
            v = v.model_dump(mode="json", exclude_none=True)
        elif isinstance(v, list):
            v = [m.model_dump(mode="json") if isinstance(m, ChatMessageIn) else m for m in v]
        out[k] = v.value if isinstance(v, MultitaskPolicy) else v
    return out


# -- the calls --------------------------------------------------------------------------------------
def _pause(run_id: str) -> _Req[Run]:
    return _Req("POST", f"/v1/runs/{_p(run_id)}/pause", lambda d: RunControlResponse.model_validate(d).run)


def _resume(run_id: str) -> _Req[Run]:
    return _Req("POST", f"/v1/runs/{_p(run_id)}/resume", lambda d: RunControlResponse.model_validate(d).run)


def _steps(run_id: str) -> _Req[StepListing]:
    return _Req("GET", f"/v1/runs/{_p(run_id)}/steps", StepListing.model_validate)


def _fork(
    run_id: str,
    step_key: str,
    *,
    input: str | list[ChatMessageIn] | None = None,
    options: Mapping[str, Any] | None = None,
    budget: Budget | Mapping[str, Any] | None = None,
) -> _Req[Run]:
    body = _body(step_key=step_key, input=input, options=dict(options) if options else None, budget=budget)
    return _Req("POST", f"/v1/runs/{_p(run_id)}/fork", Run.model_validate, json=body)


def _approvals_list(status: ApprovalStatus | str | None = None) -> _Req[list[Approval]]:
    state = status.value if isinstance(status, ApprovalStatus) else status
    return _Req(
        "GET", "/v1/approvals", lambda d: [Approval.model_validate(a) for a in d["approvals"]], params={"status": state}
    )


def _approvals_of(run_id: str) -> _Req[list[Approval]]:
    return _Req(
        "GET", f"/v1/runs/{_p(run_id)}/approvals", lambda d: [Approval.model_validate(a) for a in d["approvals"]]
    )


def _decide(
    run_id: str,
    approval_id: str,
    decision: Decision,
    *,
    reason: str | None = None,
    arguments: Mapping[str, Any] | None = None,
    answer: str | None = None,
) -> _Req[ApprovalDecisionResponse]:
    body = _body(
        approval_id=approval_id,
        decision=decision,
        reason=reason,
        arguments=dict(arguments) if arguments is not None else None,
        answer=answer,
    )
    return _Req("POST", f"/v1/runs/{_p(run_id)}/approvals", ApprovalDecisionResponse.model_validate, json=body)


def _thread_create(
    thread_id: str | None = None,
    *,
    multitask: MultitaskPolicy | str = MultitaskPolicy.REJECT,
    metadata: Mapping[str, str] | None = None,
) -> _Req[Thread]:
    body = _body(id=thread_id, multitask=MultitaskPolicy(multitask), metadata=dict(metadata or {}))
    return _Req("POST", "/v1/threads", Thread.model_validate, json=body)


def _thread_get(thread_id: str) -> _Req[Thread]:
    return _Req("GET", f"/v1/threads/{_p(thread_id)}", Thread.model_validate)


def _thread_list(*, limit: int = 50, cursor: str | None = None) -> _Req[ThreadPage]:
    return _Req("GET", "/v1/threads", ThreadPage.model_validate, params={"limit": limit, "cursor": cursor})


def _thread_runs(thread_id: str) -> _Req[list[Run]]:
    return _Req("GET", f"/v1/threads/{_p(thread_id)}/runs", lambda d: ThreadRuns.model_validate(d).runs)


def _thread_send(
    thread_id: str, input: str | list[ChatMessageIn], *, multitask: MultitaskPolicy | str | None = None, **fields: Any
) -> _Req[ThreadMessageResponse]:
    policy = MultitaskPolicy(multitask) if multitask is not None else None
    body = _body(input=input, multitask=policy, **fields)
    return _Req("POST", f"/v1/threads/{_p(thread_id)}/runs", ThreadMessageResponse.model_validate, json=body)


# -- the sync sub-clients -----------------------------------------------------------------------------
class _Sync:
    _h: httpx.Client

    def _do(self, req: _Req[T]) -> T:
        return req.finish(self._h.request(req.method, req.path, **req.kwargs()))


class SteerRuns(_Sync):
    """Mixed into ``client.runs``."""

    def pause(self, run_id: str) -> Run:
        """Pause: a running run stops at its next step boundary, a queued one at once."""
        return self._do(_pause(run_id))

    def resume(self, run_id: str) -> Run:
        """Put a paused run back on the queue."""
        return self._do(_resume(run_id))

    def steps(self, run_id: str) -> StepListing:
        """The run's committed steps in commit order (what ``fork`` can continue from)."""
        return self._do(_steps(run_id))

    def fork(
        self,
        run_id: str,
        step_key: str,
        *,
        input: str | builtins.list[ChatMessageIn] | None = None,
        options: Mapping[str, Any] | None = None,
        budget: Budget | Mapping[str, Any] | None = None,
    ) -> Run:
        """A new run that takes over ``step_key`` and the steps before it, then continues with the changes."""
        return self._do(_fork(run_id, step_key, input=input, options=options, budget=budget))


class Approvals(_Sync):
    """``client.approvals``: calls waiting for a person, and decisions on them."""

    def __init__(self, http: httpx.Client) -> None:
        self._h = http

    def list(self, *, status: ApprovalStatus | str | None = None, run_id: str | None = None) -> builtins.list[Approval]:
        """The tenant's approvals newest first (``status="pending"`` for what waits now), or one run's."""
        if run_id is not None:
            got = self._do(_approvals_of(run_id))
            return [a for a in got if status is None or a.status == ApprovalStatus(status)]
        return self._do(_approvals_list(status))

    def decide(
        self,
        run_id: str,
        approval_id: str,
        decision: Decision,
        *,
        reason: str | None = None,
        arguments: Mapping[str, Any] | None = None,
        answer: str | None = None,
    ) -> ApprovalDecisionResponse:
        """``approve`` (``answer`` for an ask_human question), ``deny`` (``reason``) or ``edit`` (``arguments``).
        ``Conflict`` when it was decided already or the run waits for nothing."""
        return self._do(_decide(run_id, approval_id, decision, reason=reason, arguments=arguments, answer=answer))


class Threads(_Sync):
    """``client.threads``: conversations over several runs."""

    def __init__(self, http: httpx.Client) -> None:
        self._h = http

    def create(
        self,
        thread_id: str | None = None,
        *,
        multitask: MultitaskPolicy | str = MultitaskPolicy.REJECT,
        metadata: Mapping[str, str] | None = None,
    ) -> Thread:
        return self._do(_thread_create(thread_id, multitask=multitask, metadata=metadata))

    def get(self, thread_id: str) -> Thread:
        return self._do(_thread_get(thread_id))

    def list(self, *, limit: int = 50, cursor: str | None = None) -> ThreadPage:
        return self._do(_thread_list(limit=limit, cursor=cursor))

    def runs(self, thread_id: str) -> builtins.list[Run]:
        """The thread's runs, oldest first."""
        return self._do(_thread_runs(thread_id))

    def send(
        self,
        thread_id: str,
        input: str | builtins.list[ChatMessageIn],
        *,
        multitask: MultitaskPolicy | str | None = None,
        **fields: Any,
    ) -> ThreadMessageResponse:
        """A message: the thread's next run. ``fields`` (kind, model, tools, budget, options…) override the
        thread's latest run's; ``multitask`` overrides the thread's policy once."""
        return self._do(_thread_send(thread_id, input, multitask=multitask, **fields))


# -- the async sub-clients ----------------------------------------------------------------------------
class _Async:
    _h: httpx.AsyncClient

    async def _do(self, req: _Req[T]) -> T:
        return req.finish(await self._h.request(req.method, req.path, **req.kwargs()))


class AsyncSteerRuns(_Async):
    async def pause(self, run_id: str) -> Run:
        return await self._do(_pause(run_id))

    async def resume(self, run_id: str) -> Run:
        return await self._do(_resume(run_id))

    async def steps(self, run_id: str) -> StepListing:
        return await self._do(_steps(run_id))

    async def fork(
        self,
        run_id: str,
        step_key: str,
        *,
        input: str | builtins.list[ChatMessageIn] | None = None,
        options: Mapping[str, Any] | None = None,
        budget: Budget | Mapping[str, Any] | None = None,
    ) -> Run:
        return await self._do(_fork(run_id, step_key, input=input, options=options, budget=budget))


class AsyncApprovals(_Async):
    def __init__(self, http: httpx.AsyncClient) -> None:
        self._h = http

    async def list(
        self, *, status: ApprovalStatus | str | None = None, run_id: str | None = None
    ) -> builtins.list[Approval]:
        if run_id is not None:
            got = await self._do(_approvals_of(run_id))
            return [a for a in got if status is None or a.status == ApprovalStatus(status)]
        return await self._do(_approvals_list(status))

    async def decide(
        self,
        run_id: str,
        approval_id: str,
        decision: Decision,
        *,
        reason: str | None = None,
        arguments: Mapping[str, Any] | None = None,
        answer: str | None = None,
    ) -> ApprovalDecisionResponse:
        return await self._do(_decide(run_id, approval_id, decision, reason=reason, arguments=arguments, answer=answer))


class AsyncThreads(_Async):
    def __init__(self, http: httpx.AsyncClient) -> None:
        self._h = http

    async def create(
        self,
        thread_id: str | None = None,
        *,
        multitask: MultitaskPolicy | str = MultitaskPolicy.REJECT,
        metadata: Mapping[str, str] | None = None,
    ) -> Thread:
        return await self._do(_thread_create(thread_id, multitask=multitask, metadata=metadata))

    async def get(self, thread_id: str) -> Thread:
        return await self._do(_thread_get(thread_id))

    async def list(self, *, limit: int = 50, cursor: str | None = None) -> ThreadPage:
        return await self._do(_thread_list(limit=limit, cursor=cursor))

    async def runs(self, thread_id: str) -> builtins.list[Run]:
        return await self._do(_thread_runs(thread_id))

    async def send(
        self,
        thread_id: str,
        input: str | builtins.list[ChatMessageIn],
        *,
        multitask: MultitaskPolicy | str | None = None,
        **fields: Any,
    ) -> ThreadMessageResponse:
        return await self._do(_thread_send(thread_id, input, multitask=multitask, **fields))
