"""The SDK's public surface, and the sync and async clients staying one surface."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import conclave.sdk as sdk
from conclave.sdk import AsyncClient, Client


def test_sdk_exports_exactly_the_clients_and_their_errors() -> None:
    assert sdk.__all__ == [
        "AsyncClient",
        "BudgetExceeded",
        "Client",
        "ConclaveError",
        "Conflict",
        "NotFound",
        "ServiceUnavailable",
        "Unauthorized",
        "ValidationError",
    ]
    assert all(hasattr(sdk, name) for name in sdk.__all__)
    assert all(issubclass(getattr(sdk, n), sdk.ConclaveError) for n in sdk.__all__ if "Client" not in n)


def _methods(obj: object) -> dict[str, Callable[..., Any]]:
    return {n: getattr(obj, n) for n in dir(obj) if not n.startswith("_") and callable(getattr(obj, n))}


def test_sync_and_async_clients_have_the_same_calls_with_the_same_signatures() -> None:
    c, a = Client("http://127.0.0.1:9"), AsyncClient("http://127.0.0.1:9")
    lifecycle = {"close", "aclose"}
    for name in ("runs", "workspace", "admin", "webhooks", "schedules", None):
        sync_obj, async_obj = (getattr(c, name), getattr(a, name)) if name else (c, a)
        sync_m = {k: v for k, v in _methods(sync_obj).items() if k not in lifecycle}
        async_m = {k: v for k, v in _methods(async_obj).items() if k not in lifecycle}
        assert sync_m.keys() == async_m.keys(), name
        for k, fn in sync_m.items():
            assert inspect.signature(fn) == inspect.signature(async_m[k]), f"{name}.{k}"
            assert fn.__doc__ and fn.__doc__ == async_m[k].__doc__, f"{name}.{k} documents itself once"
            assert not inspect.iscoroutinefunction(fn), f"{name}.{k}"
            if k != "events":
                assert inspect.iscoroutinefunction(async_m[k]), f"{name}.{k} is awaited on AsyncClient"
    assert {"submit", "get", "list", "wait", "events", "cancel", "cost", "report"} <= _methods(c.runs).keys()
    c.close()


def test_ids_are_encoded_so_they_cannot_reach_another_route() -> None:
    from conclave.sdk.resources import runs, schedules, webhooks, workspace

    assert runs.get("../admin/keys").path == "/v1/runs/..%2Fadmin%2Fkeys"
    assert workspace.read("run_1", "notes/a b.md").path == "/v1/runs/run_1/workspace/notes/a%20b.md"
    assert webhooks.get_subscription("../secret").path == "/v1/webhooks/..%2Fsecret"
    assert schedules.pause_schedule("a/../b").path == "/v1/schedules/a%2F..%2Fb/pause"
