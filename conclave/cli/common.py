"""What every command shares: exit codes, the two consoles, the client options, JSON output.

The consoles never hard-wrap output that goes to a pipe or a file: rich lays text out for an
80-column terminal when it finds none, which split file names and ids across lines for ``grep`` and
scripts. Not a terminal, text is printed as is (``soft_wrap``) and tables at their natural width.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from enum import IntEnum
from typing import Any, TypeAlias

from rich.console import Console
from rich.rule import Rule
from rich.table import Table

from conclave.schema import Run, RunStatus
from conclave.sdk import Client

__all__ = [
    "Exit",
    "Subparsers",
    "add_client_options",
    "client",
    "console",
    "err",
    "exit_for",
    "note",
    "out",
    "print_json",
    "rule",
    "run_table",
]

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""What a command module's ``register(subparsers)`` receives."""


class Exit(IntEnum):
    """Exit codes scripts can rely on."""

    OK = 0
    """Done; a waited run succeeded."""
    RUN_NOT_OK = 1
    """The run ended otherwise: failed, cancelled, budget exhausted."""
    USAGE = 2
    """Bad usage or input (argparse's code too)."""
    NOT_FOUND = 3
    UNAUTHORIZED = 4
    DOWN = 5
    """The service is unreachable or unavailable."""
    CONFLICT = 6
    INTERRUPTED = 130
    """Ctrl-C."""


PIPE_WIDTH = 10_000
"""The layout width when output is not a terminal: wide enough that no table cell wraps."""


def console(*, stderr: bool = False) -> Console:
    """A console for stdout (or stderr) that hard-wraps only on a terminal."""
    c = Console(stderr=stderr)
    if c.is_terminal:
        return c
    return Console(stderr=stderr, soft_wrap=True, width=PIPE_WIDTH)


out = console()
err = console(stderr=True)


def note(message: str, *, highlight: bool = True) -> None:
    """A timestamped progress line (``console.log`` on a terminal; a plain line in a pipe, where the
    log's right-aligned columns would be padded to the layout width)."""
    if out.is_terminal:
        out.log(message, highlight=highlight, _stack_offset=2)
    else:
        from datetime import datetime

        out.print(f"[dim]{datetime.now():%H:%M:%S}[/] {message}", highlight=highlight)


def rule(title: str) -> None:
    """A titled separator, never wider than 80 columns."""
    out.print(Rule(title), width=min(out.width, 80))


def add_client_options(p: argparse.ArgumentParser) -> None:
    """``--url``, ``--api-key``, ``--json``: for every command that talks to the API."""
    p.add_argument("--url", help="API URL (default $CONCLAVE_URL or http://127.0.0.1:8000)")
    p.add_argument("--api-key", help="API key (default $CONCLAVE_API_KEY)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def api_url(args: argparse.Namespace) -> str:
    return str(getattr(args, "url", None) or os.environ.get("CONCLAVE_URL") or "http://127.0.0.1:8000")


def client(args: argparse.Namespace) -> Client:
    """The SDK client for the command's ``--url`` and ``--api-key``: the CLI reaches the service only
    over its HTTP API."""
    return Client(api_url(args), api_key=getattr(args, "api_key", None))


def print_json(obj: Any) -> None:
    """A pydantic model, or anything JSON can encode, indented, to stdout."""
    if hasattr(obj, "model_dump_json"):
        sys.stdout.write(obj.model_dump_json(indent=2) + "\n")
    else:
        sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


_STATUS_COLOR = {"succeeded": "green", "failed": "red", "cancelled": "yellow", "budget_exhausted": "magenta"}


def run_table(run: Run) -> None:
    """A run for people: status, usage, cost, then its output."""
    t = Table(show_header=False, box=None)
    t.add_row("id", run.id)
    t.add_row("kind", run.spec.kind)
    color = _STATUS_COLOR.get(run.status.value, "cyan")
    t.add_row("status", f"[{color}]{run.status.value}[/]" + (f" ({run.stop_reason.value})" if run.stop_reason else ""))
    if run.stop_detail:
        t.add_row("detail", run.stop_detail)
    u = run.usage
    t.add_row("usage", f"{u.input_tokens} in / {u.output_tokens} out tokens, {u.model_calls} model calls")
    t.add_row("cost", f"${run.cost_usd:.6f}")
    out.print(t)
    if run.output:
        rule("output")
        out.print(run.output, markup=False)


def exit_for(run: Run) -> int:
    """``Exit.OK`` for a run that succeeded, ``Exit.RUN_NOT_OK`` for any other ending."""
    return Exit.OK if run.status is RunStatus.SUCCEEDED else Exit.RUN_NOT_OK
