"""The context-window fit of max_tokens (a bug: a byte bound left ~1 token on a 2k window)."""

from __future__ import annotations

from conclave.agents.meter import Meter
from conclave.budgets.pricing import Pricing
from conclave.cluster.engines.sim import SimEngine
from conclave.cluster.router import LocalRouter
from conclave.core.ledger import RunLedger
from conclave.core.memory import InMemoryRunStore
from conclave.core.pending import LedgerOp
from conclave.schema.chat import ChatRequest


class _Sink:
    def __init__(self) -> None:
        self.ops: list[LedgerOp] = []

    async def ledger_op(self, op: LedgerOp) -> None:
        self.ops.append(op)


async def test_max_tokens_keeps_room_on_a_small_window_with_a_real_sized_prompt() -> None:
    router = LocalRouter({"m": SimEngine({"mode": "echo"}, name="m")}, {"m": 2048})
    meter = Meter(ledger=RunLedger(InMemoryRunStore(), "r"), pricing=Pricing(), router=router, sink=_Sink())
    prompt = "word " * 500  # ~2.5 kB: more bytes than the window has tokens
    req = ChatRequest(messages=[{"role": "user", "content": prompt}], max_tokens=256)
    assert meter._max_tokens("m", req) == 256
    huge = ChatRequest(messages=[{"role": "user", "content": "word " * 1500}], max_tokens=256)
    assert 1 <= meter._max_tokens("m", huge) < 256
