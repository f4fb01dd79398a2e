"""The garbage collector set for a long-lived worker process.

CPython's default thresholds (700, 10, 10) start a young collection every 700 net allocations and
an older one every few of those. A worker allocates a few thousand objects per durable step (the
messages of a turn, its events, the commit's arguments) while holding every active run's
conversation, so the collector kept walking hundreds of thousands of objects that live as long as
their runs: with 150 runs a process, ~17% of a benchmark worker's CPU went there (py-spy placed it
on the first line of whatever coroutine was being created when a collection began). Everything
startup made (modules, classes, settings, the router) is never garbage, so it is frozen out of the
collector's view, and the thresholds are raised: a young collection every 50,000 allocations, an
older one every 20 of those, a full one every 20 of those (and, as always, only when the objects
that survived since the last one are a quarter of those it kept). Cyclic garbage then lives longer:
a finished run's cycles that had reached the old generation wait for a full collection, seconds
on a busy worker (millions of allocations a second) and longer on an idle one, which allocates
little more meanwhile. Memory per active run was unchanged in the benchmark.
"""

from __future__ import annotations

import gc

__all__ = ["THRESHOLDS", "tune_for_service"]

#: (young, middle, old) collection thresholds for a worker process.
THRESHOLDS = (50_000, 20, 20)

_frozen = False


def tune_for_service() -> None:
    """Collect once, freeze what exists (once per process) and raise the thresholds. Call it after
    startup, before the work begins; calling it again only sets the thresholds again."""
    global _frozen
    if not _frozen:
        gc.collect()
        gc.freeze()
        _frozen = True
    gc.set_threshold(*THRESHOLDS)
