"""``conclave corpus add NAME PATH``: index a folder as a named search corpus, locally
(``conclave.tools.search.add_corpus``; the workers find it by name in ``$CONCLAVE_HOME/corpora``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape

from .common import Exit, Subparsers, err, out, print_json

__all__ = ["register"]


def register(sub: Subparsers) -> None:
    corp = sub.add_parser("corpus", help="search corpora").add_subparsers(dest="corpus_cmd", required=True)
    c = corp.add_parser("add", help="index a folder of .txt/.md/.rst/.html files as corpus NAME")
    c.add_argument("name")
    c.add_argument("path")
    c.add_argument("--config", help="conclave.toml")
    c.add_argument("--json", action="store_true")
    c.set_defaults(fn=cmd_corpus_add)


def cmd_corpus_add(args: argparse.Namespace) -> int:
    from conclave.config import load_settings
    from conclave.tools.search import add_corpus

    try:
        info = add_corpus(args.name, Path(args.path), load_settings(args.config).tools.search)
    except ValueError as e:
        err.print(f"[red]error:[/] {escape(str(e))}", highlight=False)
        return Exit.USAGE
    if args.json:
        print_json(info.model_dump(mode="json"))
        return Exit.OK
    dense = "with embeddings" if info.embedded else "BM25 only (install the cpu extra for embeddings)"
    out.print(
        f"corpus {escape(info.name)!r}: {info.passages} passages from {escape(info.path)}, {dense}, "
        f"in {info.seconds:.1f} s; use it with --corpus {escape(info.name)}",
        highlight=False,
    )
    return Exit.OK
