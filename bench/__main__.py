"""``python -m bench NAME [args]``: run one benchmark (prints JSON, writes a PNG to bench/results/).

A benchmark whose checks fail (the work it timed did not happen as it should) prints what failed
on stderr and exits with status 1; its figures are not written.
"""

from __future__ import annotations

import importlib
import sys

from bench._common import BenchCheckFailed

BENCHES = {
    "overhead": "bench.bench_overhead",
    "scale": "bench.bench_scale",
    "ledger": "bench.bench_ledger",
    "ensemble": "bench.bench_ensemble",
    "cpu_path": "bench.bench_cpu_path",
    "research": "bench.bench_research",
    "replay": "bench.bench_replay",
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in BENCHES:
        sys.stderr.write(f"usage: python -m bench {{{'|'.join(BENCHES)}}} [options]\n")
        sys.exit(2)
    name = sys.argv[1]
    module = importlib.import_module(BENCHES[name])
    sys.argv = [f"bench {name}", *sys.argv[2:]]
    try:
        module.main()
    except BenchCheckFailed as e:
        sys.stderr.write(f"bench {name}: CHECK FAILED: {e}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
