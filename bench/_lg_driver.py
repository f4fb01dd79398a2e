"""Runs the LangGraph anchor (``../shared/anchors/langgraph_concurrent.py``) unchanged, in its own
process, and adds to each load's JSON line what the anchor leaves out:

* ``postgres_cpu_seconds``: CPU of the PostgreSQL server over the load (the postmaster, its
  backends and its helper processes, read from /proc around the anchor's own ``load``);
* ``checkpoint_threads`` / ``checkpoints``: how many runs (threads) the checkpointer stored and how
  many checkpoints they wrote during the load, so the caller can check every run persisted its
  steps.

It wraps the anchor's ``Postgres``, ``InMemorySaver`` and ``load`` names (the anchor's ``main``
looks them up when it runs) and then calls the anchor's ``main``; nothing of the anchor is copied.

    python -m bench._lg_driver ANCHOR_PATH [anchor options...]
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from typing import Any

from bench._procs import tree_cpu


def _load_anchor(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location("langgraph_concurrent", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load the LangGraph anchor from {path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    anchor = Path(sys.argv[1])
    sys.argv = [str(anchor), *sys.argv[2:]]
    lg = _load_anchor(anchor)
    servers: list[Any] = []
    savers: list[Any] = []

    class Postgres(lg.Postgres):  # type: ignore[name-defined,misc]
        def __enter__(self) -> Any:
            servers.append(super().__enter__())
            return servers[-1]

        def __exit__(self, *exc: object) -> None:
            servers.remove(self)
            super().__exit__(*exc)

        def postmaster(self) -> int:
            return int((Path(self.dir) / "data" / "postmaster.pid").read_text().split()[0])

    class InMemorySaver(lg.InMemorySaver):  # type: ignore[name-defined,misc]
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            savers.append(self)

    def memory_counts() -> tuple[int, int]:
        threads = checkpoints = 0
        for s in savers:
            threads += len(s.storage)
            checkpoints += sum(len(per_ns) for ns in s.storage.values() for per_ns in ns.values())
        return threads, checkpoints

    async def postgres_counts(url: str) -> tuple[int, int]:
        import psycopg

        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            cur = await conn.execute("SELECT count(DISTINCT thread_id), count(*) FROM checkpoints")
            row = await cur.fetchone()
            assert row is not None
            return int(row[0]), int(row[1])

    original_load = lg.load

    async def load(agent: Any, runs: int, steps: int, latency: float, checkpointed: bool) -> dict[str, Any]:
        pg = servers[-1] if servers else None
        before = (await postgres_counts(pg.url)) if pg else memory_counts()
        pg_cpu0 = tree_cpu(pg.postmaster()) if pg else None
        out: dict[str, Any] = await original_load(agent, runs, steps, latency, checkpointed)
        if pg is not None:
            assert pg_cpu0 is not None
            out["postgres_cpu_seconds"] = round(tree_cpu(pg.postmaster()) - pg_cpu0, 2)
        after = (await postgres_counts(pg.url)) if pg else memory_counts()
        out["checkpoint_threads"] = after[0] - before[0]
        out["checkpoints"] = after[1] - before[1]
        return out

    lg.Postgres, lg.InMemorySaver, lg.load = Postgres, InMemorySaver, load
    asyncio.run(lg.main())


if __name__ == "__main__":
    main()
