"""How a run body leaves at a step boundary without ending: to pause, or to wait for people.

A ``StepBoundary`` is not an error. It is raised where no new step may start (a pause was asked; a call
needs a person's decision, or the tenant's budget is spent) and travels out of the body like a
cancellation: it derives from ``BaseException``, so a kind's ``except Exception`` never swallows it, and
sibling steps already running finish and commit first (the kinds gather their siblings before raising).
The runner then hands the run over to the store (``SteerStore.pause`` / ``wait_for_approval``) — no lease,
no worker, no hold is kept — and any worker continues it from its committed steps later.
"""

from __future__ import annotations

from .store_steer import PauseReason

__all__ = ["PauseAtBoundary", "StepBoundary", "WaitForPeople", "is_outer_scope"]


class StepBoundary(BaseException):  # noqa: N818 - a signal, like CancelledError, not an error
    """The body stops before its next step; the runner hands the run over."""


class PauseAtBoundary(StepBoundary):
    """Stop to pause: a person asked (``user``), a thread's new message interrupted the run
    (``interrupt``), or the tenant's or key's budget is spent (``tenant_budget``)."""

    def __init__(self, reason: PauseReason | None = None, detail: str | None = None) -> None:
        super().__init__(detail or f"pause ({reason or 'requested'})")
        self.reason = reason
        self.detail = detail


class WaitForPeople(StepBoundary):
    """Calls need a person's decision; they are listed in ``RunContext.approval_requests``."""


def is_outer_scope(scope: str) -> bool:
    """A ledger scope above the run (a tenant's or an API key's budget): running out there pauses the
    run (status ``paused``, reason ``tenant_budget``) instead of ending it."""
    return scope.startswith(("tenant/", "key/"))
