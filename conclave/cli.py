"""``conclave``: start the service, submit and inspect runs, pull workspaces, manage keys.

Thin by design: the service lives in ``conclave.service``, HTTP in the SDK. Exit codes scripts can
rely on: 0 ok (a waited run succeeded), 1 the run ended otherwise (failed, cancelled, budget), 2
bad usage or input, 3 not found, 4 unauthorized, 5 service unreachable, 6 conflict.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["main"]

out = Console()
err = Console(stderr=True)

EXIT_RUN_NOT_OK, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_AUTH, EXIT_DOWN, EXIT_CONFLICT = 1, 2, 3, 4, 5, 6


def _url(args: argparse.Namespace) -> str:
    return args.url or os.environ.get("CONCLAVE_URL") or "http://127.0.0.1:8000"


def _client(args: argparse.Namespace) -> Any:
    from conclave.sdk import Client

    return Client(_url(args), api_key=getattr(args, "api_key", None))


def _print_json(obj: Any) -> None:
    if hasattr(obj, "model_dump_json"):
        sys.stdout.write(obj.model_dump_json(indent=2) + "\n")
    else:
        sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def _run_table(run: Any) -> None:
    t = Table(show_header=False, box=None)
    t.add_row("id", run.id)
    t.add_row("kind", run.spec.kind)
    color = {"succeeded": "green", "failed": "red", "cancelled": "yellow", "budget_exhausted": "magenta"}.get(
        run.status.value, "cyan"
    )
    t.add_row("status", f"[{color}]{run.status.value}[/]" + (f" ({run.stop_reason.value})" if run.stop_reason else ""))
    if run.stop_detail:
        t.add_row("detail", run.stop_detail)
    t.add_row(
        "usage",
        f"{run.usage.input_tokens} in / {run.usage.output_tokens} out tokens, {run.usage.model_calls} model calls",
    )
    t.add_row("cost", f"${run.cost_usd:.6f}")
    out.print(t)
    if run.output:
        out.rule("output")
        out.print(run.output, markup=False)


def _exit_for(run: Any) -> int:
    return 0 if run.status.value == "succeeded" else EXIT_RUN_NOT_OK


# -- conclave up -----------------------------------------------------------------------------------
DEMO_TASK = "How do Python's asyncio tasks differ from threads?"


def cmd_up(args: argparse.Namespace) -> int:
    from conclave.config import load_settings
    from conclave.service import LocalService

    settings = load_settings(
        args.config,
        redis_url=args.redis_url,
        api_host=args.host,
        api_port=args.port,
        workers=args.workers,
    )
    svc = LocalService(settings, router=args.router)
    stop = threading.Event()
    try:
        with out.status("starting Conclave…"):
            info = svc.start(say=lambda m: out.log(m))
        # After ray.init, which installs its own SIGTERM handler: a SIGTERM stops everything we
        # started, like Ctrl-C, instead of killing this process and orphaning the servers.
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        t = Table(title="Conclave is up", show_header=False)
        t.add_row("API", f"{info.api_url}  (OpenAPI: {info.api_url}/openapi.json)")
        t.add_row("OpenAI endpoint", f"{info.api_url}/v1/chat/completions")
        t.add_row("Console", f"{info.api_url}/ui")
        t.add_row(
            "Redis",
            info.redis_url
            + (f"  [dim](bundled Valkey, data in {info.redis_data})[/]" if info.redis_embedded else "  (external)"),
        )
        t.add_row("Ray", info.ray_address)
        t.add_row("models", ", ".join(f"{m['name']} ({m['engine']} x{m['replicas']})" for m in info.models))
        t.add_row("workers", str(info.workers))
        out.print(t)
        if not info.auth:
            out.print(
                "[bold yellow]AUTH IS OFF[/]: anyone who can reach the API can use it (bound to "
                f"{settings.api_host}). Set CONCLAVE_AUTH=1 and create keys with `conclave keys create`."
            )
        if args.demo is not None:
            task = args.demo or DEMO_TASK
            rc = _demo(info.api_url, task, args)
            if args.once:
                return rc
        elif args.once:
            return 0
        out.print("[dim]Ctrl-C stops everything started here.[/]")
        while not stop.wait(0.5):
            pass
        return 0
    except KeyboardInterrupt:
        return 0
    except Exception as e:
        from conclave.config import ConfigError
        from conclave.service import StartError

        if isinstance(e, (StartError, ConfigError)):
            err.print(f"[red]error:[/] {e}")
            return EXIT_DOWN if isinstance(e, StartError) else EXIT_USAGE
        raise
    finally:
        with out.status("stopping…"):
            svc.stop()
        out.log("stopped everything started by `conclave up`")


def _demo(api_url: str, task: str, args: argparse.Namespace) -> int:
    from conclave.sdk import Client

    spec: dict[str, Any] = {"kind": args.demo_kind, "input": task}
    if args.demo_kind == "research":
        # The CPU model picks tools reliably only under a constraint; "auto" lets it answer when it
        # has nothing to add, which keeps the demo to about half a minute (docs/research.md).
        spec["options"] = {"corpus": "python-docs", "tool_choice": "auto", "rounds": 1}
    with Client(api_url) as c:
        run = c.runs.submit(spec)
        out.print(f"demo run [bold]{run.id}[/] ({args.demo_kind}): {task}")
        _follow(c, run.id)
        final = c.runs.wait(run.id, timeout=1800)
        _run_table(final)
        return _exit_for(final)


def _follow(c: Any, run_id: str) -> None:
    """A live view of a run: the stage, steps (model turns and tool calls), tokens, and one bar per
    budget limit of the run burning down (read from the ledger every couple of seconds)."""
    import time as _time

    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    tokens, steps, stage = [0, 0], [0, 0], "queued"
    bars: dict[str, Any] = {}
    last_cost = 0.0
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(bar_width=24),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=out,
        transient=True,
    ) as p:
        t = p.add_task("queued", total=None, note="")
        for ev in c.runs.events(run_id):
            if ev.type == "model.call":
                u = ev.data.get("usage", {})
                tokens[0] += int(u.get("prompt_tokens", 0))
                tokens[1] += int(u.get("completion_tokens", 0))
                steps[0] += 1
            elif ev.type == "tool.call":
                steps[1] += 1
            elif ev.type in ("stage.started", "run.started", "run.resumed"):
                stage = str(ev.data.get("stage") or ev.type.split(".", 1)[1])
            p.update(
                t,
                description=f"[bold]{stage}[/]  {steps[0]} model turns, {steps[1]} tool calls",
                note=f"tokens {tokens[0]} in / {tokens[1]} out",
            )
            if ev.type in ("tool.call", "stage.started", "stage.finished", "run.resumed", "agent.stopped"):
                out.log(f"[dim]#{ev.id}[/] {ev.type} {json.dumps(ev.data, default=str)[:160]}", highlight=False)
            now = _time.monotonic()
            if now - last_cost > 2.0 or ev.type == "run.finished":
                last_cost = now
                try:
                    cost = c.runs.cost(run_id)
                except Exception:  # the view must never stop the follow
                    continue
                for lim in cost.limits:
                    if lim.scope != "run":
                        continue
                    if lim.limit not in bars:
                        bars[lim.limit] = p.add_task(f"budget {lim.limit}", total=lim.cap or 1, note="")
                    p.update(
                        bars[lim.limit], completed=min(lim.used, lim.cap), note=f"{lim.used:g} of {lim.cap:g} used"
                    )


# -- runs ------------------------------------------------------------------------------------------
def _budget(args: argparse.Namespace) -> dict[str, Any] | None:
    b = {
        "usd": args.budget_usd,
        "input_tokens": args.budget_input_tokens,
        "output_tokens": args.budget_output_tokens,
        "model_calls": args.budget_model_calls,
        "wall_seconds": args.budget_seconds,
    }
    b = {k: v for k, v in b.items() if v is not None}
    return b or None


def _options(pairs: list[str]) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    for p in pairs:
        k, sep, v = p.partition("=")
        if not sep or not k:
            raise ValueError(f"--option expects key=value, got {p!r}")
        try:
            opts[k] = json.loads(v)
        except ValueError:
            opts[k] = v
    return opts


def cmd_submit(args: argparse.Namespace) -> int:
    spec: dict[str, Any] = {"kind": args.kind, "input": args.input}
    if args.model:
        spec["model"] = args.model
    if args.system:
        spec["system"] = args.system
    if args.tools:
        spec["tools"] = [t for group in args.tools for t in group.split(",") if t]
    if args.max_steps:
        spec["max_steps"] = args.max_steps
    if args.ensemble:
        spec["ensemble"] = args.ensemble
    budget = _budget(args)
    if budget:
        spec["budget"] = budget
    opts = _options(args.option or [])
    if args.corpus:
        opts["corpus"] = args.corpus
    if opts:
        spec["options"] = opts
    with _client(args) as c:
        run = c.runs.submit(spec, idempotency_key=args.idempotency_key)
        if args.follow:
            _follow(c, run.id)
        if args.wait or args.follow:
            run = c.runs.wait(run.id, timeout=args.timeout)
            if args.json:
                _print_json(run)
            else:
                _run_table(run)
            return _exit_for(run)
        if args.json:
            _print_json(run)
        else:
            out.print(run.id)
        return 0


def cmd_runs_show(args: argparse.Namespace) -> int:
    with _client(args) as c:
        run = c.runs.get(args.run_id)
    if args.json:
        _print_json(run)
    else:
        _run_table(run)
    return 0


def cmd_runs_ls(args: argparse.Namespace) -> int:
    with _client(args) as c:
        page = c.runs.list(status=args.status, limit=args.limit, cursor=args.cursor)
    if args.json:
        _print_json(page)
        return 0
    t = Table("id", "kind", "status", "created", "tokens in/out", "cost $")
    for r in page.runs:
        t.add_row(
            r.id,
            r.spec.kind,
            r.status.value,
            r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            f"{r.usage.input_tokens}/{r.usage.output_tokens}",
            f"{r.cost_usd:.6f}",
        )
    out.print(t)
    if page.next_cursor:
        out.print(f"[dim]more: --cursor {page.next_cursor}[/]")
    return 0


def cmd_runs_cancel(args: argparse.Namespace) -> int:
    with _client(args) as c:
        run = c.runs.cancel(args.run_id)
    _print_json(run) if args.json else out.print(
        f"{run.id}: {run.status.value}"
        + (" (cancel requested)" if run.cancel_requested and not run.status.terminal else "")
    )
    return 0


def cmd_runs_events(args: argparse.Namespace) -> int:
    with _client(args) as c:
        for ev in c.runs.events(args.run_id, after=args.after, follow=args.follow):
            if args.json:
                sys.stdout.write(ev.model_dump_json() + "\n")
                sys.stdout.flush()
            else:
                out.print(
                    f"[dim]#{ev.id}[/] [bold]{ev.type}[/] {json.dumps(ev.data, default=str)}",
                    markup=True,
                    highlight=False,
                )
    return 0


def cmd_runs_cost(args: argparse.Namespace) -> int:
    with _client(args) as c:
        cost = c.runs.cost(args.run_id)
    if args.json:
        _print_json(cost)
        return 0
    for title, rows in (
        ("model", cost.by_model),
        ("tool", cost.by_tool),
        ("stage", cost.by_stage),
        ("agent", cost.by_agent),
    ):
        if not rows:
            continue
        t = Table(f"by {title}", "input", "output", "cached", "calls", "USD", "seconds")
        for name, line in sorted(rows.items()):
            u = line.usage
            t.add_row(
                name,
                str(u.input_tokens),
                str(u.output_tokens),
                str(u.cached_tokens),
                str(u.model_calls or sum(u.tool_calls.values())),
                f"{line.usd:.6f}",
                f"{line.seconds:.2f}",
            )
        out.print(t)
    u = cost.total.usage
    out.print(
        f"total: {u.input_tokens} in / {u.output_tokens} out tokens, {u.model_calls} model calls, tools {u.tool_calls}, ${cost.total.usd:.6f}"
    )
    for lim in cost.limits:
        out.print(
            f"  limit {lim.scope}:{lim.limit}: used {lim.used:g} of {lim.cap:g}"
            + (" [red]EXHAUSTED[/]" if lim.exhausted else "")
        )
    return 0


def cmd_workspace_pull(args: argparse.Namespace) -> int:
    with _client(args) as c:
        files = c.workspace.download(args.run_id, args.dest)
    out.print(f"wrote {len(files)} files to {args.dest}")
    return 0


def cmd_models_ls(args: argparse.Namespace) -> int:
    with _client(args) as c:
        models = c.models()
    if args.json:
        _print_json(models)
    else:
        for m in models:
            out.print(m)
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    with _client(args) as c:
        if args.keys_cmd == "create":
            new = c.admin.create_key(args.tenant, name=args.name or "", admin=args.admin)
            if args.json:
                _print_json(new)
            else:
                out.print(f"key {new.info.id} for tenant {new.info.tenant}:\n{new.key}")
                out.print("[dim](shown once; only its hash is stored)[/]")
        elif args.keys_cmd == "ls":
            keys = c.admin.list_keys(args.tenant)
            if args.json:
                _print_json([k.model_dump() for k in keys])
            else:
                for k in keys:
                    role = " admin" if k.admin else ""
                    state = "revoked" if k.revoked else "active"
                    out.print(f"{k.id}  tenant={k.tenant}  name={k.name}  {state}{role}")
        else:
            key = c.admin.revoke_key(args.key_id)
            if args.json:
                _print_json(key)
            else:
                out.print(f"revoked {key.id}")
    return 0


def cmd_ensemble_validate(args: argparse.Namespace) -> int:
    import logging

    from conclave.agents.ensemble import validate_paths

    logging.getLogger("conclave").setLevel(logging.ERROR)  # warnings are printed per file below

    checks = validate_paths(args.paths)
    bad = [c for c in checks if not c.ok]
    if args.json:
        _print_json([c.model_dump(mode="json") for c in checks])
    else:
        for c in checks:
            if c.ok:
                out.print(
                    f"[green]ok[/]   {c.path}  layers={c.layers} calls={c.total_model_calls} rounds={c.critical_path_rounds}"
                )
                for w in c.warnings:
                    out.print(f"       [yellow]warning:[/] {w}", highlight=False)
            else:
                out.print(f"[red]fail[/] {c.path}: {c.error}", markup=True, highlight=False)
        out.print(f"{len(checks) - len(bad)} valid, {len(bad)} invalid")
    return EXIT_USAGE if bad else 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Benchmarks live in the repository's ``bench/`` package (not installed with the wheel)."""
    import subprocess

    root = os.environ.get("CONCLAVE_REPO") or os.getcwd()
    if not os.path.isfile(os.path.join(root, "bench", "__main__.py")):
        err.print(
            "[red]error:[/] run `conclave bench` from a Conclave checkout (or set CONCLAVE_REPO): bench/ is not installed"
        )
        return EXIT_USAGE
    return subprocess.call([sys.executable, "-m", "bench", args.name, *args.rest], cwd=root)


# -- parser ----------------------------------------------------------------------------------------
def _client_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help="API URL (default $CONCLAVE_URL or http://127.0.0.1:8000)")
    p.add_argument("--api-key", help="API key (default $CONCLAVE_API_KEY)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="conclave", description="Distributed agent orchestration with budgets.")
    sub = p.add_subparsers(dest="cmd", required=True)

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

    s = sub.add_parser("submit", help="submit a task")
    s.add_argument("input", help="the task text")
    s.add_argument("--kind", default="chat")
    s.add_argument("--model")
    s.add_argument("--system")
    s.add_argument("--tools", action="append", help="tool names or groups (repeat or comma-separate)")
    s.add_argument("--ensemble")
    s.add_argument("--corpus", help="search corpus for research runs (e.g. python-docs)")
    s.add_argument("--max-steps", type=int)
    s.add_argument("--option", action="append", help="kind option key=value (value parsed as JSON when it is)")
    s.add_argument("--budget-usd", type=float)
    s.add_argument("--budget-input-tokens", type=int)
    s.add_argument("--budget-output-tokens", type=int)
    s.add_argument("--budget-model-calls", type=int)
    s.add_argument("--budget-seconds", type=float)
    s.add_argument("--idempotency-key")
    s.add_argument("--wait", action="store_true", help="wait for the run to finish")
    s.add_argument("--follow", action="store_true", help="show live progress, then the result")
    s.add_argument("--timeout", type=float, default=None)
    _client_opts(s)
    s.set_defaults(fn=cmd_submit)

    runs = sub.add_parser("runs", help="inspect runs").add_subparsers(dest="runs_cmd", required=True)
    r = runs.add_parser("show")
    r.add_argument("run_id")
    _client_opts(r)
    r.set_defaults(fn=cmd_runs_show)
    r = runs.add_parser("ls")
    r.add_argument("--status")
    r.add_argument("--limit", type=int, default=20)
    r.add_argument("--cursor")
    _client_opts(r)
    r.set_defaults(fn=cmd_runs_ls)
    r = runs.add_parser("cancel")
    r.add_argument("run_id")
    _client_opts(r)
    r.set_defaults(fn=cmd_runs_cancel)
    r = runs.add_parser("events")
    r.add_argument("run_id")
    r.add_argument("--after", type=int, default=0)
    r.add_argument("--no-follow", dest="follow", action="store_false")
    _client_opts(r)
    r.set_defaults(fn=cmd_runs_events)
    r = runs.add_parser("cost")
    r.add_argument("run_id")
    _client_opts(r)
    r.set_defaults(fn=cmd_runs_cost)

    ws = sub.add_parser("workspace", help="run workspaces").add_subparsers(dest="ws_cmd", required=True)
    w = ws.add_parser("pull", help="download a run's workspace into a folder")
    w.add_argument("run_id")
    w.add_argument("dest")
    _client_opts(w)
    w.set_defaults(fn=cmd_workspace_pull)

    models = sub.add_parser("models", help="served models").add_subparsers(dest="models_cmd", required=True)
    m = models.add_parser("ls")
    _client_opts(m)
    m.set_defaults(fn=cmd_models_ls)

    keys = sub.add_parser(
        "keys", help="API keys (admin routes: an admin key, or CONCLAVE_ADMIN_KEY, when auth is on)"
    ).add_subparsers(dest="keys_cmd", required=True)
    for name in ("create", "ls", "revoke"):
        k = keys.add_parser(name)
        _client_opts(k)
        if name == "create":
            k.add_argument("--tenant", required=True)
            k.add_argument("--name")
            k.add_argument("--admin", action="store_true", help="the key may manage keys and tenants")
        elif name == "ls":
            k.add_argument("--tenant")
        else:
            k.add_argument("key_id")
        k.set_defaults(fn=cmd_keys)

    from conclave.cli_reporting import register as register_reporting

    register_reporting(sub, client_opts=_client_opts, client=_client)

    b = sub.add_parser("bench", help="run a benchmark from a checkout (prints JSON, writes a PNG)")
    b.add_argument("name", choices=["overhead", "scale", "ledger", "ensemble", "cpu_path"])
    b.add_argument("rest", nargs=argparse.REMAINDER)
    b.set_defaults(fn=cmd_bench)

    ens = sub.add_parser("ensemble", help="ensemble configs").add_subparsers(dest="ens_cmd", required=True)
    e = ens.add_parser("validate", help="validate Archon or Conclave ensemble configs (files or folders)")
    e.add_argument("paths", nargs="+")
    e.add_argument("--json", action="store_true")
    e.set_defaults(fn=cmd_ensemble_validate)
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    fn: Callable[[argparse.Namespace], int] = args.fn
    try:
        code = fn(args)
    except KeyboardInterrupt:
        code = 130
    except Exception as e:  # one line for the user, no traceback
        code = _report(e)
    sys.exit(code)


def _report(e: Exception) -> int:
    import httpx
    from pydantic import ValidationError as PydanticValidationError

    from conclave.config import ConfigError
    from conclave.sdk.errors import ConclaveError, Conflict, NotFound, ServiceUnavailable, Unauthorized

    if isinstance(e, ConclaveError):
        err.print(f"[red]error:[/] {e.message}", highlight=False)
        for d in e.details:
            err.print(
                f"  {d.get('field')}: {d.get('message')}" + (f" (got {d['value']!r})" if "value" in d else ""),
                highlight=False,
                markup=False,
            )
        return {
            NotFound: EXIT_NOT_FOUND,
            Unauthorized: EXIT_AUTH,
            ServiceUnavailable: EXIT_DOWN,
            Conflict: EXIT_CONFLICT,
        }.get(type(e), EXIT_USAGE)
    if isinstance(e, httpx.TransportError):
        err.print(f"[red]error:[/] cannot reach Conclave: {e} (is `conclave up` running? see --url)")
        return EXIT_DOWN
    if isinstance(e, PydanticValidationError):
        from conclave.api.errors import describe_errors

        message, _ = describe_errors(list(e.errors()))
        err.print(f"[red]error:[/] {message}", highlight=False, markup=False)
        return EXIT_USAGE
    if isinstance(e, (ConfigError, ValueError, TimeoutError, OSError)):
        err.print(f"[red]error:[/] {e}", highlight=False)
        return EXIT_USAGE
    raise e


if __name__ == "__main__":
    main()
