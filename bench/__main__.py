"""``python -m bench NAME [args]``: run one benchmark (prints JSON, writes a PNG to bench/results/)."""

from __future__ import annotations

import importlib
import sys

BENCHES = {
    "overhead": "bench.bench_overhead",
    "scale": "bench.bench_scale",
    "ledger": "bench.bench_ledger",
    "ensemble": "bench.bench_ensemble",
    "cpu_path": "bench.bench_cpu_path",
    "research": "bench.bench_research",
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in BENCHES:
        sys.stderr.write(f"usage: python -m bench {{{'|'.join(BENCHES)}}} [options]\n")
        sys.exit(2)
    name = sys.argv[1]
    module = importlib.import_module(BENCHES[name])
    sys.argv = [f"bench {name}", *sys.argv[2:]]
    module.main()


if __name__ == "__main__":
    main()
