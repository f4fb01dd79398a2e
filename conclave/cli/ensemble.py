"""``conclave ensemble validate``: check Archon or Conclave ensemble configs (files or folders) locally."""

from __future__ import annotations

import argparse
import logging

from rich.markup import escape

from .common import Exit, Subparsers, out, print_json

__all__ = ["register"]


def register(sub: Subparsers) -> None:
    ens = sub.add_parser("ensemble", help="ensemble configs").add_subparsers(dest="ens_cmd", required=True)
    e = ens.add_parser("validate", help="validate Archon or Conclave ensemble configs (files or folders)")
    e.add_argument("paths", nargs="+")
    e.add_argument("--json", action="store_true")
    e.set_defaults(fn=cmd_ensemble_validate)


def cmd_ensemble_validate(args: argparse.Namespace) -> int:
    from conclave.agents.ensemble import validate_paths

    logging.getLogger("conclave").setLevel(logging.ERROR)  # warnings are printed per file below
    checks = validate_paths(args.paths)
    bad = [c for c in checks if not c.ok]
    if args.json:
        print_json([c.model_dump(mode="json") for c in checks])
        return Exit.USAGE if bad else Exit.OK
    for c in checks:  # paths and messages are text, never markup
        if c.ok:
            out.print(
                f"[green]ok[/]   {escape(c.path)}  layers={c.layers} calls={c.total_model_calls} rounds={c.critical_path_rounds}",
                highlight=False,
            )
            for w in c.warnings:
                out.print(f"       [yellow]warning:[/] {escape(w)}", highlight=False)
        else:
            out.print(f"[red]fail[/] {escape(c.path)}: {escape(c.error or '')}", highlight=False)
    out.print(f"{len(checks) - len(bad)} valid, {len(bad)} invalid")
    return Exit.USAGE if bad else Exit.OK
