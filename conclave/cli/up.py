"""``conclave up``: start Valkey, Ray, the models, the workers and the API in the foreground; with
``--demo``, run one task through it and show it live."""

from __future__ import annotations

import argparse
import signal
import threading
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

from conclave.sdk import Client

from .common import Exit, Subparsers, err, exit_for, note, out, run_table
from .follow import follow

if TYPE_CHECKING:
    from conclave.service import ServiceInfo

__all__ = ["DEMO_TASK", "register"]

DEMO_TASK = "How do Python's asyncio tasks differ from threads?"


def register(sub: Subparsers) -> None:
    up = sub.add_parser("up", help="start Valkey, Ray, the models, the workers and the API (foreground)")
    up.add_argument("--config", help="conclave.toml")
    up.add_argument("--redis-url", help="use this Redis instead of the bundled Valkey")
    up.add_argument("--host")
    up.add_argument("--port", type=int)
    up.add_argument("--workers", type=int)
    up.add_argument("--router", choices=["serve", "local"], default="serve", help=argparse.SUPPRESS)
    up.add_argument("--demo", nargs="?", const="", default=None, metavar="TASK", help="run a demo task once started")
    up.add_argument("--demo-kind", default="research", help="kind of the demo run (default: research)")
    up.add_argument("--once", action="store_true", help="stop after the demo task instead of serving")
    up.set_defaults(fn=cmd_up)


def cmd_up(args: argparse.Namespace) -> int:
    from conclave.config import ConfigError, load_settings
    from conclave.service import LocalService, StartError

    try:
        settings = load_settings(
            args.config, redis_url=args.redis_url, api_host=args.host, api_port=args.port, workers=args.workers
        )
    except ConfigError as e:
        err.print(f"[red]error:[/] {escape(str(e))}", highlight=False)
        return Exit.USAGE
    svc = LocalService(settings, router=args.router)
    stop = threading.Event()
    try:
        with out.status("starting Conclave…"):
            info = svc.start(say=note)
        # After ray.init, which installs its own SIGTERM handler: a SIGTERM stops everything we
        # started, like Ctrl-C, instead of killing this process and orphaning the servers.
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        _print_info(info, settings.api_host)
        if args.demo is not None:
            rc = _demo(info.api_url, args.demo or DEMO_TASK, args.demo_kind)
            if args.once:
                return rc
        elif args.once:
            return Exit.OK
        out.print("[dim]Ctrl-C stops everything started here.[/]")
        while not stop.wait(0.5):
            pass
        return Exit.OK
    except KeyboardInterrupt:
        return Exit.OK
    except StartError as e:
        err.print(f"[red]error:[/] {escape(str(e))}", highlight=False)
        return Exit.DOWN
    except ConfigError as e:
        err.print(f"[red]error:[/] {escape(str(e))}", highlight=False)
        return Exit.USAGE
    finally:
        with out.status("stopping…"):
            svc.stop()
        note("stopped everything started by `conclave up`")


def _print_info(info: ServiceInfo, api_host: str) -> None:
    t = Table(title="Conclave is up", show_header=False)
    t.add_row("API", f"{info.api_url}  (OpenAPI: {info.api_url}/openapi.json)")
    t.add_row("OpenAI endpoint", f"{info.api_url}/v1/chat/completions")
    t.add_row("Console", f"{info.api_url}/ui")
    where = f"  [dim](bundled Valkey, data in {info.redis_data})[/]" if info.redis_embedded else "  (external)"
    t.add_row("Redis", info.redis_url + where)
    t.add_row("Ray", info.ray_address)
    t.add_row("models", ", ".join(f"{m['name']} ({m['engine']} x{m['replicas']})" for m in info.models))
    t.add_row("workers", str(info.workers))
    out.print(t)
    if not info.auth:
        out.print(
            "[bold yellow]AUTH IS OFF[/]: anyone who can reach the API can use it (bound to "
            f"{api_host}). Set CONCLAVE_AUTH=1 and create keys with `conclave keys create`."
        )


def _demo(api_url: str, task: str, kind: str) -> int:
    spec: dict[str, Any] = {"kind": kind, "input": task}
    if kind == "research":
        # The CPU model picks tools reliably only under a constraint; "auto" lets it answer when it
        # has nothing to add, which keeps the demo to about half a minute (docs/research.md).
        spec["options"] = {"corpus": "python-docs", "tool_choice": "auto", "rounds": 1}
    with Client(api_url) as c:
        run = c.runs.submit(spec)
        out.print(f"demo run [bold]{run.id}[/] ({kind}): {task}")
        follow(c, run.id)
        final = c.runs.wait(run.id, timeout=1800)
        run_table(final)
        return exit_for(final)
