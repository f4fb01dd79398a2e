"""``conclave bench NAME``: run a benchmark of the repository's ``bench/`` package (not installed with
the wheel, so only from a checkout) in a child process."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from .common import Exit, Subparsers, err

__all__ = ["BENCHMARKS", "register"]

BENCHMARKS = ("overhead", "scale", "ledger", "ensemble", "cpu_path", "research")


def register(sub: Subparsers) -> None:
    b = sub.add_parser("bench", help="run a benchmark from a checkout (prints JSON, writes a PNG)")
    b.add_argument("name", choices=BENCHMARKS)
    b.add_argument("rest", nargs=argparse.REMAINDER)
    b.set_defaults(fn=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    root = os.environ.get("CONCLAVE_REPO") or os.getcwd()
    if not os.path.isfile(os.path.join(root, "bench", "__main__.py")):
        err.print(
            "[red]error:[/] run `conclave bench` from a Conclave checkout (or set CONCLAVE_REPO): bench/ is not installed"
        )
        return Exit.USAGE
    return subprocess.call([sys.executable, "-m", "bench", args.name, *args.rest], cwd=root)
