"""``conclave``: start the service, submit and inspect runs, pull workspaces, manage keys, webhooks and
schedules.

Thin by design: the service lives in ``conclave.service``, and every command that reaches a running
service does so over its HTTP API with the SDK — the CLI never talks to Redis itself. Exit codes
scripts can rely on (``common.Exit``): 0 ok (a waited run succeeded), 1 the run ended otherwise
(failed, cancelled, budget), 2 bad usage or input, 3 not found, 4 unauthorized, 5 service
unreachable, 6 conflict, 130 interrupted.

One module per command group, each with ``register(subparsers)``: to add ``conclave threads …``, write
``threads.py`` with a ``register`` that adds its parsers and sets ``fn`` (a function of the parsed
arguments that returns an exit code) on each, and list the module in ``COMMANDS`` below. Errors need
no handling there: an SDK error, a validation error or an unreachable service becomes one line on
stderr and its exit code here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

from . import admin, bench, corpus, ensemble, models, runs, schedules, steer, tenants, up, webhooks
from .common import Exit, err

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS: tuple[ModuleType, ...] = (
    up,
    runs,
    steer,
    models,
    admin,
    tenants,
    webhooks,
    schedules,
    bench,
    ensemble,
    corpus,
)
"""The command modules, in the order ``conclave --help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="conclave", description="Distributed agent orchestration with budgets.")
    sub = p.add_subparsers(dest="cmd", required=True)
    for module in COMMANDS:
        module.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    """The ``conclave`` entry point: parse, run the command, exit with its code."""
    args = build_parser().parse_args(argv)
    fn: Callable[[argparse.Namespace], int] = args.fn
    try:
        code = fn(args)
    except KeyboardInterrupt:
        code = Exit.INTERRUPTED
    except Exception as e:  # one line for the user, no traceback
        code = report(e)
    sys.exit(int(code))


def report(e: Exception) -> int:
    """Print a failure as one line (and a line per bad field) and answer its exit code; an exception
    that is not the user's to fix is re-raised with its traceback."""
    import httpx
    from pydantic import ValidationError as PydanticValidationError
    from rich.markup import escape

    from conclave.config import ConfigError
    from conclave.schema import field_problems, format_problems
    from conclave.sdk import ConclaveError, Conflict, NotFound, ServiceUnavailable, Unauthorized

    if isinstance(e, ConclaveError):
        err.print(f"[red]error:[/] {escape(e.message)}", highlight=False)
        for d in e.details:
            got = f" (got {d['value']!r})" if "value" in d else ""
            err.print(f"  {d.get('field')}: {d.get('message')}{got}", highlight=False, markup=False)
        for cls, code in (
            (NotFound, Exit.NOT_FOUND),
            (Unauthorized, Exit.UNAUTHORIZED),
            (ServiceUnavailable, Exit.DOWN),
            (Conflict, Exit.CONFLICT),
        ):
            if isinstance(e, cls):
                return code
        return Exit.USAGE
    if isinstance(e, httpx.TransportError):
        err.print(
            f"[red]error:[/] cannot reach Conclave: {escape(str(e))} (is `conclave up` running? see --url)",
            highlight=False,
        )
        return Exit.DOWN
    if isinstance(e, PydanticValidationError):
        message = format_problems(field_problems(e)[:5]).replace("\n", "; ") or "invalid input"
        err.print(f"[red]error:[/] {message}", highlight=False, markup=False)
        return Exit.USAGE
    if isinstance(e, ConfigError | ValueError | TimeoutError | OSError):
        err.print(f"[red]error:[/] {escape(str(e))}", highlight=False)
        return Exit.USAGE
    raise e
