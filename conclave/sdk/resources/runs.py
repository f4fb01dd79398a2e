"""``client.runs``: submit, inspect, wait for, follow and cancel runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from httpx_sse import ServerSentEvent

from conclave.schema import CancelResponse, Cost, Event, Run, RunPage, RunStatus, TaskSpec

from ..errors import BudgetExceeded, ConclaveError, ServiceUnavailable
from ..request import NEXT_EVENT, Call, Connect, Deadline, Emit, Flow, Sleep, StreamFlow, model, path, path_part
from ..resource import Resource, TransportT, endpoint, flow, stream
from . import steering

__all__ = ["Runs"]

# Reading an event stream: the server pings every 15 s, so a minute without a byte means it is gone.
_STREAM_TIMEOUT = httpx.Timeout(30, read=60)


def _spec(spec: TaskSpec | Mapping[str, Any]) -> dict[str, Any]:
    """Validate on the client too: a bad spec fails here with the same field errors, no round trip."""
    m = spec if isinstance(spec, TaskSpec) else TaskSpec.model_validate(dict(spec))
    return m.model_dump(mode="json", exclude_none=True)


def submit(spec: TaskSpec | Mapping[str, Any], *, idempotency_key: str | None = None) -> Call[Run]:
    """Queue a run. With ``idempotency_key`` a repeated submission returns the first run."""
    return Call("POST", "/v1/runs", model(Run), json=_spec(spec), headers={"Idempotency-Key": idempotency_key})


def get(run_id: str) -> Call[Run]:
    """The run as it is now."""
    return Call("GET", path("/v1/runs/{}", run_id), model(Run))


def list_runs(
    *, status: RunStatus | str | None = None, limit: int = 50, cursor: str | None = None, thread_id: str | None = None
) -> Call[RunPage]:
    """A page of runs, newest first; pass ``next_cursor`` back as ``cursor`` for the next one. ``thread_id``:
    one thread's runs."""
    state = status.value if isinstance(status, RunStatus) else status
    params = {"status": state, "limit": limit, "cursor": cursor, "thread_id": thread_id}
    return Call("GET", "/v1/runs", model(RunPage), params=params)


def _cancelled(r: httpx.Response) -> Run:
    return CancelResponse.model_validate_json(r.content).run


def cancel(run_id: str) -> Call[Run]:
    """Cancel a run: a queued one at once, a running one within a second; a finished one stays as it is."""
    return Call("POST", path("/v1/runs/{}/cancel", run_id), _cancelled)


def cost(run_id: str) -> Call[Cost]:
    """The run's cost by model, tool, stage and agent, and every budget limit's use."""
    return Call("GET", path("/v1/runs/{}/cost", run_id), model(Cost))


def _text_or_none(r: httpx.Response) -> str | None:
    return r.text if r.status_code == 200 else None


def report(run_id: str) -> Flow[str]:
    """The run's report (``report.md`` of its workspace), else its output."""
    text: str | None = yield Call(
        "GET", path("/v1/runs/{}/workspace/{}", run_id, path_part("report.md")), _text_or_none, accept=frozenset({404})
    )
    if text and text.strip():
        return text
    run: Run = yield get(run_id)
    return run.output or ""


def _checked(run: Run) -> Run:
    if run.status is RunStatus.SUCCEEDED:
        return run
    detail = f"run {run.id} ended {run.status.value}" + (f": {run.stop_detail}" if run.stop_detail else "")
    if run.status is RunStatus.BUDGET_EXHAUSTED:
        raise BudgetExceeded(detail, code=run.exhausted_limit or "budget_exhausted")
    raise ConclaveError(detail, code=run.status.value)


def wait(run_id: str, *, timeout: float | None = None, poll: float = 0.25, raise_on_failure: bool = False) -> Flow[Run]:
    """The run once it has ended, polling every ``poll`` seconds. ``timeout`` bounds the whole wait, a
    request in flight included (``TimeoutError``). With ``raise_on_failure`` an ending other than success
    raises (``BudgetExceeded`` for a spent budget, ``ConclaveError`` otherwise)."""
    if timeout is not None:
        yield Deadline(timeout)
    state = "unanswered"
    try:
        while True:
            run: Run = yield get(run_id)
            if run.status.terminal:
                return _checked(run) if raise_on_failure else run
            state = run.status.value
            yield Sleep(poll)
    except TimeoutError:
        raise TimeoutError(f"run {run_id} still {state} after {timeout} s") from None


def _no_body(r: httpx.Response) -> None:
    return None


def events(run_id: str, *, after: int = 0, follow: bool = True, max_reconnects: int = 100) -> StreamFlow[Event]:
    """The run's events after event ``after``, in order. With ``follow`` it waits for new ones and ends
    after ``run.finished``. A dropped connection or an unavailable server is retried with backoff and
    resumed with ``Last-Event-ID``, so every event is yielded exactly once; ``max_reconnects`` failures
    in a row without an event raise the last error."""
    last, failures = after, 0
    while True:
        try:
            yield Connect(
                Call(
                    "GET",
                    path("/v1/runs/{}/events", run_id),
                    _no_body,
                    params={"follow": follow},
                    headers={"Last-Event-ID": str(last)},
                    timeout=_STREAM_TIMEOUT,
                )
            )
            while (sse := (yield NEXT_EVENT)) is not None:
                ev = _event(sse)
                if ev is None or ev.id <= last:
                    continue
                last, failures = ev.id, 0
                yield Emit(ev)
                if ev.type == "run.finished":
                    return
            if not follow:
                return
            run: Run = yield get(run_id)
            if run.status.terminal and run.last_event_id <= last:
                return
        except (httpx.TransportError, ServiceUnavailable):
            failures += 1
            if failures > max_reconnects:
                raise
            yield Sleep(min(0.1 * 2**failures, 2.0))


def _event(sse: ServerSentEvent) -> Event | None:
    return Event.model_validate_json(sse.data) if sse.data else None


class Runs(Resource[TransportT]):
    """Runs: ``submit``, ``get``, ``list``, ``wait``, ``events``, ``cancel``, ``cost``, ``report``; and the
    steering calls ``pause``, ``resume``, ``steps``, ``fork``."""

    submit = endpoint(submit)
    get = endpoint(get)
    list = endpoint(list_runs)
    cancel = endpoint(cancel)
    cost = endpoint(cost)
    report = flow(report)
    wait = flow(wait)
    events = stream(events)
    pause = endpoint(steering.pause)
    resume = endpoint(steering.resume)
    steps = endpoint(steering.steps)
    fork = endpoint(steering.fork)
