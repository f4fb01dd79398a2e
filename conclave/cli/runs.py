"""``conclave submit``, ``conclave runs show|ls|cancel|events|cost`` and ``conclave workspace pull``
(``runs pause|resume|steps|fork`` come from ``steer.py``)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.table import Table

from . import steer
from .common import Exit, Subparsers, add_client_options, client, err, exit_for, out, print_json, run_table
from .follow import follow

__all__ = ["register"]


def register(sub: Subparsers) -> None:
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
    s.add_argument("--thread", help="send it as a message on this thread (made if there is none)")
    s.add_argument("--approve", action="append", metavar="TOOL", help="calls of this tool wait for your approval")
    s.add_argument("--approval-timeout", type=float, help="seconds a call may wait for a decision")
    s.add_argument("--wait", action="store_true", help="wait for the run to finish")
    s.add_argument("--follow", action="store_true", help="show live progress, then the result")
    s.add_argument("--timeout", type=float, default=None)
    add_client_options(s)
    s.set_defaults(fn=cmd_submit)

    runs = sub.add_parser("runs", help="inspect runs").add_subparsers(dest="runs_cmd", required=True)
    r = runs.add_parser("show")
    r.add_argument("run_id")
    add_client_options(r)
    r.set_defaults(fn=cmd_runs_show)
    r = runs.add_parser("ls")
    r.add_argument("--status")
    r.add_argument("--limit", type=int, default=20)
    r.add_argument("--cursor")
    add_client_options(r)
    r.set_defaults(fn=cmd_runs_ls)
    r = runs.add_parser("cancel")
    r.add_argument("run_id")
    add_client_options(r)
    r.set_defaults(fn=cmd_runs_cancel)
    r = runs.add_parser("events")
    r.add_argument("run_id")
    r.add_argument("--after", type=int, default=0)
    r.add_argument("--no-follow", dest="follow", action="store_false")
    add_client_options(r)
    r.set_defaults(fn=cmd_runs_events)
    r = runs.add_parser("cost")
    r.add_argument("run_id")
    add_client_options(r)
    r.set_defaults(fn=cmd_runs_cost)
    r = runs.add_parser(
        "purge", help="delete finished runs: those the retention policy says are due, or a tenant's older ones"
    )
    r.add_argument("--tenant", help="with --older-than-days: whose runs")
    r.add_argument("--older-than-days", type=float, help="delete the tenant's runs that ended longer ago than this")
    add_client_options(r)
    r.set_defaults(fn=cmd_runs_purge)
    steer.register_runs(runs)

    ws = sub.add_parser("workspace", help="run workspaces").add_subparsers(dest="ws_cmd", required=True)
    w = ws.add_parser("pull", help="download a run's workspace into a folder")
    w.add_argument("run_id")
    w.add_argument("dest")
    add_client_options(w)
    w.set_defaults(fn=cmd_workspace_pull)


def _budget(args: argparse.Namespace) -> dict[str, Any] | None:
    b = {
        "usd": args.budget_usd,
        "input_tokens": args.budget_input_tokens,
        "output_tokens": args.budget_output_tokens,
        "model_calls": args.budget_model_calls,
        "wall_seconds": args.budget_seconds,
    }
    return {k: v for k, v in b.items() if v is not None} or None


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


def spec_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The ``TaskSpec`` the flags of ``conclave submit`` describe (the SDK validates it)."""
    spec: dict[str, Any] = {"kind": args.kind, "input": args.input}
    for flag, key in (("model", "model"), ("system", "system"), ("max_steps", "max_steps"), ("ensemble", "ensemble")):
        if getattr(args, flag):
            spec[key] = getattr(args, flag)
    if args.tools:
        spec["tools"] = [t for group in args.tools for t in group.split(",") if t]
    budget = _budget(args)
    if budget:
        spec["budget"] = budget
    opts = _options(args.option or [])
    if args.corpus:
        opts["corpus"] = args.corpus
    if opts:
        spec["options"] = opts
    if args.thread:
        spec["thread_id"] = args.thread
    if args.approve:
        spec["approval"] = {t: "always" for group in args.approve for t in group.split(",") if t}
    if args.approval_timeout:
        spec["approval_timeout_s"] = args.approval_timeout
    return spec


def cmd_submit(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    with client(args) as c:
        run = c.runs.submit(spec, idempotency_key=args.idempotency_key)
        if args.follow and not follow(c, run.id):
            run = c.runs.get(run.id)
            err.print(f"run {run.id} waits for a decision; see `conclave approvals list --run {run.id}`")
            print_json(run) if args.json else run_table(run)
            return Exit.RUN_NOT_OK
        if args.wait or args.follow:
            run = c.runs.wait(run.id, timeout=args.timeout)
            print_json(run) if args.json else run_table(run)
            return exit_for(run)
    print_json(run) if args.json else out.print(run.id)
    return Exit.OK


def cmd_runs_show(args: argparse.Namespace) -> int:
    with client(args) as c:
        run = c.runs.get(args.run_id)
    print_json(run) if args.json else run_table(run)
    return Exit.OK


def cmd_runs_ls(args: argparse.Namespace) -> int:
    with client(args) as c:
        page = c.runs.list(status=args.status, limit=args.limit, cursor=args.cursor)
    if args.json:
        print_json(page)
        return Exit.OK
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
    return Exit.OK


def cmd_runs_cancel(args: argparse.Namespace) -> int:
    with client(args) as c:
        run = c.runs.cancel(args.run_id)
    if args.json:
        print_json(run)
    else:
        pending = run.cancel_requested and not run.status.terminal
        out.print(f"{run.id}: {run.status.value}" + (" (cancel requested)" if pending else ""))
    return Exit.OK


def cmd_runs_events(args: argparse.Namespace) -> int:
    with client(args) as c:
        for ev in c.runs.events(args.run_id, after=args.after, follow=args.follow):
            if args.json:
                sys.stdout.write(ev.model_dump_json() + "\n")
                sys.stdout.flush()
            else:
                out.print(f"[dim]#{ev.id}[/] [bold]{ev.type}[/] {json.dumps(ev.data, default=str)}", highlight=False)
    return Exit.OK


def cmd_runs_cost(args: argparse.Namespace) -> int:
    with client(args) as c:
        cost = c.runs.cost(args.run_id)
    if args.json:
        print_json(cost)
        return Exit.OK
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
            calls = u.model_calls or sum(u.tool_calls.values())
            t.add_row(
                name,
                str(u.input_tokens),
                str(u.output_tokens),
                str(u.cached_tokens),
                str(calls),
                f"{line.usd:.6f}",
                f"{line.seconds:.2f}",
            )
        out.print(t)
    u = cost.total.usage
    out.print(
        f"total: {u.input_tokens} in / {u.output_tokens} out tokens, {u.model_calls} model calls, "
        f"tools {u.tool_calls}, ${cost.total.usd:.6f}"
    )
    for lim in cost.limits:
        out.print(
            f"  limit {lim.scope}:{lim.limit}: used {lim.used:g} of {lim.cap:g}"
            + (" [red]EXHAUSTED[/]" if lim.exhausted else "")
        )
    return Exit.OK


def cmd_workspace_pull(args: argparse.Namespace) -> int:
    with client(args) as c:
        files = c.workspace.download(args.run_id, args.dest)
    out.print(f"wrote {len(files)} files to {args.dest}")
    return Exit.OK


def cmd_runs_purge(args: argparse.Namespace) -> int:
    with client(args) as c:
        res = c.tenants.purge(args.tenant, older_than_days=args.older_than_days)
    print_json(res) if args.json else out.print(f"purged {res.purged} finished run(s)")
    return Exit.OK
