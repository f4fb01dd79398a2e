"""``conclave models ls``: the models the service serves."""

from __future__ import annotations

import argparse

from .common import Exit, Subparsers, add_client_options, client, out, print_json

__all__ = ["register"]


def register(sub: Subparsers) -> None:
    models = sub.add_parser("models", help="served models").add_subparsers(dest="models_cmd", required=True)
    m = models.add_parser("ls")
    add_client_options(m)
    m.set_defaults(fn=cmd_models_ls)


def cmd_models_ls(args: argparse.Namespace) -> int:
    with client(args) as c:
        models = c.models()
    if args.json:
        print_json(models)
    else:
        for m in models:
            out.print(m, markup=False, highlight=False)
    return Exit.OK
