"""The built-in run kinds, registered in ``conclave.core.kinds`` by ``register_builtin_kinds``.

Imported explicitly (no module strings), so the import graph shows every edge: ``chat`` (one model call),
``agent`` (the tool-calling loop), ``ensemble`` (an Archon-style ensemble), ``ensemble_search``
(architecture search) and ``research`` (context builder → report writer).
"""

from __future__ import annotations

from conclave.core.kinds import register_kind

from . import chat, loop, research
from .ensemble import kind as ensemble_kind
from .ensemble import search as ensemble_search

__all__ = ["register_builtin_kinds"]


def register_builtin_kinds() -> None:
    for k in (chat.KIND, loop.KIND, ensemble_kind.KIND, ensemble_search.KIND, research.KIND):
        register_kind(k)
