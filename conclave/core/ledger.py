"""A run's budget ledger, as the run code sees it: reserve a call's worst case, commit what it used.

Scopes are paths: ``run``, ``run/<stage>``, ``run/<stage>/<agent>``. ``reserve`` holds an amount in a scope
and every scope enclosing it at once (one atomic store operation, so concurrent agents can never overshoot
a cap together); a ``LedgerOp`` applied inside the step's commit releases the hold and records the actual
usage. The arithmetic lives in the store (``RunStore.reserve`` / ``commit``); this module is the typed,
run-scoped view of it. Budget policy — caps from a ``Budget``, prices, the cost breakdown, the ``<budget>``
block — lives above, in ``conclave.budgets``.

Ledger limits are ``usd`` (pico-dollars), ``input_tokens``, ``output_tokens``, ``model_calls`` and
``tool:<name>`` (``tool:*`` counts every tool); ``label`` gives the name a user wrote in the budget.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from . import telemetry
from .ids import unique_id
from .pending import LedgerOp
from .store import LedgerSnapshot, Refusal, Reserved, RunStore

__all__ = ["ROOT", "BudgetExhausted", "RunLedger", "enclosing", "limit_label"]

ROOT = "run"

#: How long a hold lives unless it is renewed; a worker renews the holds of calls in flight.
HOLD_TTL_S = 900.0


def limit_label(limit: str) -> str:
    """The budget's name for a ledger limit: ``tool:search`` → ``tool_calls.search``, ``tool:*`` →
    ``tool_calls``; other limits are spelt the same."""
    if limit.startswith("tool:"):
        name = limit[5:]
        return "tool_calls" if name == "*" else f"tool_calls.{name}"
    return limit


@functools.lru_cache(maxsize=4096)
def enclosing(scope: str) -> tuple[str, ...]:
    """``run/a/b`` → ``(run, run/a, run/a/b)``. Cached: a run has a handful of scopes, and every
    reservation and ledger op of every step asks for them."""
    parts = scope.split("/")
    return tuple("/".join(parts[: i + 1]) for i in range(len(parts)))


class BudgetExhausted(RuntimeError):
    """A limit has no room left for the next call. Callers branch on the fields, never the message:
    ``scope`` is the scope whose cap binds, ``limit`` the ledger limit (``usd``, ``output_tokens``,
    ``tool:search``…), ``label`` its budget name (``tool_calls.search``) and ``room`` what was left."""

    def __init__(self, scope: str, limit: str, room: int = 0) -> None:
        self.scope, self.limit, self.room = scope, limit, room
        where = "" if scope == ROOT else f" of scope {scope!r}"
        super().__init__(f"budget exhausted: {limit_label(limit)}{where} has no room left")

    @property
    def label(self) -> str:
        return limit_label(self.limit)

    def __reduce__(self) -> tuple[object, ...]:
        return (BudgetExhausted, (self.scope, self.limit, self.room))


class RunLedger:
    """The ledger of one run, as seen by the worker that owns it (``owner`` is its lease token)."""

    def __init__(self, store: RunStore, rid: str, owner: str = "") -> None:
        self.store = store
        self.rid = rid
        self.owner = owner
        #: The run's own capped (scope, limit) pairs, as the store keeps them (fixed while the run runs).
        self.own: frozenset[tuple[str, str]] = frozenset()
        #: Whether the run's tenant or key has a budget: then every call reserves. The worker refreshes it
        #: while the run is in flight (a tenant budget set mid-run).
        self.outer = False
        self.wall_cap_s: float | None = None
        #: The run's scopes as the ``<budget>`` block needs them (caps, used, reserved): read once, then
        #: replaced by what every reservation answers and kept up by this ledger's own commits.
        self._view: LedgerSnapshot | None = None
        self._held: dict[str, list[tuple[str, str, int]]] = {}  # res id -> (scope, limit, amount) held

    @property
    def has_caps(self) -> bool:
        """Whether any call must reserve: the run has caps of its own, or its tenant or key a budget."""
        return bool(self.own) or self.outer

    async def set_caps(self, caps: Mapping[str, int], *, wall_cap_s: float | None = None) -> None:
        """Install ``{"<scope>|<limit>": cap}``; a resumed run keeps the caps it first had (the store
        answers with those)."""
        self.wall_cap_s = wall_cap_s
        got = await self.store.set_caps(self.rid, self.owner, caps)
        self.own, self.outer = got.own, got.outer

    def holds_nothing(self, scopes: tuple[str, ...], amounts: Mapping[str, int]) -> bool:
        """A reservation that would hold nothing anywhere: no limit of ``amounts`` is capped in ``scopes``
        and the run's tenant and key have no budget. It needs no store operation (the store would hold
        nothing and answer yes); a commit still fences the step by the lease."""
        if self.outer:
            return False
        own = self.own
        return not any((s, k) in own for s in scopes for k in amounts)

    async def reserve(
        self, scope: str, amounts: Mapping[str, int], *, ttl_s: float = HOLD_TTL_S
    ) -> tuple[str | None, Refusal | None]:
        """Hold ``amounts`` in ``scope`` and every scope enclosing it. Returns (reservation id, None) or
        (None, the refusal naming the binding scope, limit and the room left there). Without caps nothing
        is held and nothing is asked of the store."""
        scopes = enclosing(scope)
        if self.holds_nothing(scopes, amounts):
            return None, None
        res_id = f"r{unique_id()}"
        got = await self.store.reserve(self.rid, self.owner, res_id, scopes=scopes, amounts=amounts, ttl_s=ttl_s)
        if isinstance(got, Refusal):
            telemetry.ledger_refused(got.scope, got.limit)
            return None, got
        self._take_view(got)
        self._held[res_id] = [(s, k, int(v)) for s in scopes for k, v in amounts.items() if (s, k) in got.view.caps]
        return res_id, None

    def _take_view(self, got: Reserved) -> None:
        if self._view is None:
            return  # the first read (``budget_snapshot``) brings the other scopes too
        for part in ("caps", "used", "reserved"):
            getattr(self._view, part).update(getattr(got.view, part))

    def applied(self, ops: list[LedgerOp]) -> None:
        """Keep the budget view up with ops this ledger's run just committed: each releases its hold and
        adds its usage, clamped to the room under the cap as the store does (what does not fit is the
        store's ``over``)."""
        view = self._view
        if view is None:
            return
        for op in ops:
            for s, k, amount in self._held.pop(op.res, []) if op.res else []:
                view.reserved[(s, k)] = view.reserved.get((s, k), 0) - amount
            for s in op.scopes:
                for k, n in op.used.items():
                    cap = view.caps.get((s, k))
                    if cap is None or not n:
                        continue
                    room = max(cap - view.used.get((s, k), 0) - view.reserved.get((s, k), 0), 0)
                    view.used[(s, k)] = view.used.get((s, k), 0) + min(int(n), room)

    async def budget_snapshot(self) -> LedgerSnapshot:
        """The ledger as the ``<budget>`` block shows it (caps, used, reserved): one read the first time,
        then kept from every reservation's answer and this run's commits, so a turn's block costs no
        round trip. Holds and usage of other processes reach it with the next reservation."""
        if self._view is None:
            snap = await self.store.ledger_snapshot(self.rid)
            self._view = LedgerSnapshot(caps=snap.caps, used=snap.used, reserved=snap.reserved)
        return self._view

    @staticmethod
    def commit_op(
        res_id: str | None, scope: str, used: Mapping[str, int], by: Mapping[str, int] | None = None
    ) -> LedgerOp:
        """The ledger change to apply in a step's commit."""
        return LedgerOp(res=res_id, scopes=enclosing(scope), used=dict(used), by=dict(by or {}))

    async def snapshot(self) -> LedgerSnapshot:
        return await self.store.ledger_snapshot(self.rid)
