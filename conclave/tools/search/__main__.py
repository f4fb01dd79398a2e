"""``python -m conclave.tools.search build-python-docs OUT.json [--html DIR] [--vectors DIR]``: build
the python-docs corpus in its own process (the workers call this; see ``corpora``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .corpora import build_python_docs


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m conclave.tools.search")
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build-python-docs")
    b.add_argument("out", type=Path)
    b.add_argument("--html", type=Path, default=None, help="Python's HTML documentation; default: the pydoc corpus")
    b.add_argument("--vectors", type=Path, default=None, help="vector cache folder (embeddings skipped if unset)")
    a = p.parse_args(argv)
    n = build_python_docs(a.out, a.html, a.vectors)
    sys.stdout.write(f"{n} passages\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
