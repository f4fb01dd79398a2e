"""Steering calls (``docs/steering.md``): pause / resume / steps / fork for ``client.runs``, and the
``client.approvals`` and ``client.threads`` resources."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any

import httpx

from conclave.schema import (
    Approval,
    ApprovalDecisionResponse,
    ApprovalList,
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

from ..request import Call, Flow, model, path
from ..resource import Resource, TransportT, endpoint, flow

__all__ = ["Approvals", "Threads", "fork", "pause", "resume", "steps"]


def _body(**fields: Any) -> dict[str, Any]:
    """A JSON body of the fields that are set (models and vocabularies as JSON)."""
    out: dict[str, Any] = {}
    for k, v in fields.items():
        if v is None:
            continue
        if isinstance(v, Budget):
            v = v.model_dump(mode="json", exclude_none=True)
        elif isinstance(v, list):
            v = [m.model_dump(mode="json") if isinstance(m, ChatMessageIn) else m for m in v]
        elif isinstance(v, MultitaskPolicy):
            v = v.value
        out[k] = v
    return out


def _control(r: httpx.Response) -> Run:
    return RunControlResponse.model_validate_json(r.content).run


# -- on client.runs -----------------------------------------------------------------------------------
def pause(run_id: str) -> Call[Run]:
    """Pause: a running run stops at its next step boundary (holding nothing), a queued one at once."""
    return Call("POST", path("/v1/runs/{}/pause", run_id), _control)


def resume(run_id: str) -> Call[Run]:
    """Put a paused run back on the queue; any worker continues it from its checkpoint."""
    return Call("POST", path("/v1/runs/{}/resume", run_id), _control)


def steps(run_id: str) -> Call[StepListing]:
    """The run's committed steps in commit order: the points ``fork`` can continue from."""
    return Call("GET", path("/v1/runs/{}/steps", run_id), model(StepListing))


def fork(
    run_id: str,
    step_key: str,
    *,
    input: str | list[ChatMessageIn] | None = None,
    options: Mapping[str, Any] | None = None,
    budget: Budget | Mapping[str, Any] | None = None,
) -> Call[Run]:
    """A new run that takes over ``step_key`` and the steps before it (replayed, never run again) and
    continues from there with the changes given; the original is not touched."""
    body = _body(step_key=step_key, input=input, options=dict(options) if options else None, budget=budget)
    return Call("POST", path("/v1/runs/{}/fork", run_id), model(Run), json=body)


# -- client.approvals -------------------------------------------------------------------------------
def _approvals(r: httpx.Response) -> builtins.list[Approval]:
    return ApprovalList.model_validate_json(r.content).approvals


def list_approvals(
    *, status: ApprovalStatus | str | None = None, run_id: str | None = None
) -> Flow[builtins.list[Approval]]:
    """The tenant's approvals newest first (``status="pending"``: what waits for someone now), or one
    run's in the order they were asked."""
    state = ApprovalStatus(status) if status is not None else None
    if run_id is None:
        got: builtins.list[Approval] = yield Call(
            "GET", "/v1/approvals", _approvals, params={"status": state.value if state else None}
        )
        return got
    mine: builtins.list[Approval] = yield Call("GET", path("/v1/runs/{}/approvals", run_id), _approvals)
    return [a for a in mine if state is None or a.status is state]


def decide(
    run_id: str,
    approval_id: str,
    decision: Decision,
    *,
    reason: str | None = None,
    arguments: Mapping[str, Any] | None = None,
    answer: str | None = None,
) -> Call[ApprovalDecisionResponse]:
    """``approve`` (an ask_human question: with the ``answer``), ``deny`` (the ``reason`` is what the model
    reads) or ``edit`` (new ``arguments``). ``Conflict`` when the call was decided already or the run waits
    for nothing; ``ValidationError`` naming the field for an edit that does not fit the tool's schema."""
    body = _body(
        approval_id=approval_id,
        decision=decision,
        reason=reason,
        arguments=dict(arguments) if arguments is not None else None,
        answer=answer,
    )
    return Call("POST", path("/v1/runs/{}/approvals", run_id), model(ApprovalDecisionResponse), json=body)


class Approvals(Resource[TransportT]):
    """Calls waiting for a person, and the decisions on them."""

    list = flow(list_approvals)
    decide = endpoint(decide)


# -- client.threads -----------------------------------------------------------------------------------
def create(
    thread_id: str | None = None,
    *,
    multitask: MultitaskPolicy | str = MultitaskPolicy.REJECT,
    metadata: Mapping[str, str] | None = None,
) -> Call[Thread]:
    """A new thread (``thread_id`` chosen by you, or made); ``multitask`` is what a message does while a
    run of the thread is active (``reject``, ``enqueue``, ``interrupt``, ``rollback``)."""
    body = _body(id=thread_id, multitask=MultitaskPolicy(multitask), metadata=dict(metadata or {}))
    return Call("POST", "/v1/threads", model(Thread), json=body)


def get(thread_id: str) -> Call[Thread]:
    return Call("GET", path("/v1/threads/{}", thread_id), model(Thread))


def list_threads(*, limit: int = 50, cursor: str | None = None) -> Call[ThreadPage]:
    """A page of the tenant's threads, newest first."""
    return Call("GET", "/v1/threads", model(ThreadPage), params={"limit": limit, "cursor": cursor})


def _runs(r: httpx.Response) -> builtins.list[Run]:
    return ThreadRuns.model_validate_json(r.content).runs


def runs(thread_id: str) -> Call[builtins.list[Run]]:
    """The thread's runs, oldest first."""
    return Call("GET", path("/v1/threads/{}/runs", thread_id), _runs)


def send(
    thread_id: str, input: str | list[ChatMessageIn], *, multitask: MultitaskPolicy | str | None = None, **fields: Any
) -> Call[ThreadMessageResponse]:
    """A message: the thread's next run, which sees the thread's conversation and a copy of its latest
    workspace. ``fields`` (kind, model, tools, budget, options, approval…) override the thread's latest
    run's; ``multitask`` overrides the thread's policy once."""
    policy = MultitaskPolicy(multitask) if multitask is not None else None
    body = _body(input=input, multitask=policy, **fields)
    return Call("POST", path("/v1/threads/{}/runs", thread_id), model(ThreadMessageResponse), json=body)


class Threads(Resource[TransportT]):
    """Conversations over several runs."""

    create = endpoint(create)
    get = endpoint(get)
    list = endpoint(list_threads)
    runs = endpoint(runs)
    send = endpoint(send)
