"""``conclave threads …``, ``conclave approvals …``, ``conclave runs pause|resume|steps|fork``, and the
approval prompt of ``conclave submit --follow`` — over the SDK (``client.threads``, ``client.approvals``).

``register(subparsers)`` adds ``threads`` and ``approvals``; ``register_runs(runs)`` adds the steering
commands to ``conclave runs`` (``runs.py`` calls it). ``prompt_approvals`` asks about a waiting run's
pending calls on the terminal (or whatever feeds stdin) and records each answer; it returns False when
nobody is there to answer (end of input), so a follow can stop instead of waiting for ever.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from rich.table import Table

from conclave.schema import Decision
from conclave.sdk import Client

from .common import Exit, Subparsers, add_client_options, client, err, out, print_json

__all__ = ["prompt_approvals", "register", "register_runs"]

Ask = Callable[[str], str]

_DECISIONS: dict[str, Decision] = {"approve": "approve", "deny": "deny", "edit": "edit"}


def _client(args: argparse.Namespace) -> Client:
    return client(args)


def _json(obj: Any) -> None:
    if isinstance(obj, list):
        print_json([o.model_dump(mode="json") for o in obj])
    else:
        print_json(obj)


def _options(pairs: list[str]) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    for p in pairs:
        k, sep, v = p.partition("=")
        if not sep or not k:
            raise ValueError(f"expected key=value, got {p!r}")
        try:
            opts[k] = json.loads(v)
        except ValueError:
            opts[k] = v
    return opts


# -- the approval prompt ------------------------------------------------------------------------------
def _describe(a: Any) -> str:
    if a.kind == "question":
        return f"[bold]{a.tool}[/] asks: {a.arguments.get('question', '')}"
    args = json.dumps(a.arguments, ensure_ascii=False)
    held = ", ".join(f"{k} {v}" for k, v in a.reserve.items() if v)
    return f"[bold]{a.tool}[/]({args[:600]})" + (f"  [dim]holds {held}[/]" if held else "")


def _ask(prompt: str) -> str:
    """A question on stderr, the answer from stdin (stdout stays the command's output, e.g. its JSON)."""
    err.print(prompt, end="", markup=False, highlight=False)
    return input()


def prompt_approvals(c: Client, run_id: str, *, ask: Ask = _ask) -> bool:
    """Ask about every pending call of ``run_id`` and send each decision. False when input ended
    before the run's calls were all decided (nobody is there to answer)."""
    from conclave.sdk import Conflict, ValidationError

    pending = c.approvals.list(run_id=run_id, status="pending")
    for a in pending:
        err.print(f"run {run_id} waits: {_describe(a)}", highlight=False)
        while True:
            decision: Decision
            kw: dict[str, Any]
            try:
                if a.kind == "question":
                    text = ask("answer (empty to decline): ").strip()
                    decision, kw = ("approve", {"answer": text}) if text else ("deny", {})
                else:
                    choice = ask("[a]pprove, [d]eny, [e]dit? ").strip().lower()[:1]
                    if choice == "a":
                        decision, kw = "approve", {}
                    elif choice == "d":
                        decision, kw = "deny", {"reason": ask("reason (the model reads it): ").strip() or None}
                    elif choice == "e":
                        decision, kw = "edit", {"arguments": json.loads(ask("new arguments (JSON): "))}
                    else:
                        err.print("answer a, d or e")
                        continue
            except EOFError:
                return False
            except ValueError as e:
                err.print(f"not JSON: {e}", markup=False)
                continue
            try:
                res = c.approvals.decide(run_id, a.id, decision, **kw)
            except ValidationError as e:
                err.print(f"refused: {e.message}", markup=False)
                continue
            except Conflict as e:
                err.print(f"already decided elsewhere: {e.message}", markup=False)
                break
            err.print(f"{a.id}: {res.approval.status.value}", highlight=False)
            break
    return True


# -- commands -------------------------------------------------------------------------------------
def _thread_table(threads: list[Any]) -> None:
    t = Table("id", "multitask", "runs", "active", "pending", "created")
    for th in threads:
        t.add_row(
            th.id,
            th.multitask.value,
            str(th.runs),
            th.active_run or "",
            str(len(th.pending_runs)),
            th.created_at.isoformat(timespec="seconds"),
        )
    out.print(t)


def cmd_threads_create(args: argparse.Namespace) -> int:
    with _client(args) as c:
        th = c.threads.create(args.id, multitask=args.multitask, metadata=_options(args.meta or []))
        _json(th) if args.json else out.print(th.id)
    return 0


def cmd_threads_ls(args: argparse.Namespace) -> int:
    with _client(args) as c:
        page = c.threads.list(limit=args.limit)
        _json(page) if args.json else _thread_table(page.threads)
    return 0


def cmd_threads_show(args: argparse.Namespace) -> int:
    with _client(args) as c:
        th = c.threads.get(args.thread_id)
        if args.json:
            _json(th)
            return 0
        _thread_table([th])
        for r in c.threads.runs(args.thread_id):
            out.print(f"  {r.id}  {r.status.value:<16} {r.spec.input_text()[:80]}", highlight=False, markup=False)
    return 0


def cmd_threads_send(args: argparse.Namespace) -> int:
    fields: dict[str, Any] = {}
    if args.kind:
        fields["kind"] = args.kind
    if args.model:
        fields["model"] = args.model
    if args.tools:
        fields["tools"] = [t for group in args.tools for t in group.split(",") if t]
    with _client(args) as c:
        res = c.threads.send(args.thread_id, args.input, multitask=args.multitask, **fields)
        run = res.run
        if args.wait:
            run = c.runs.wait(run.id, timeout=args.timeout)
        if args.json:
            _json(run)
        else:
            out.print(f"{run.id} ({res.result}): {run.status.value}", highlight=False)
            if args.wait and run.output:
                out.print(run.output, markup=False)
        return 0 if not args.wait or run.status.value == "succeeded" else Exit.RUN_NOT_OK


def cmd_runs_control(args: argparse.Namespace) -> int:
    with _client(args) as c:
        run = c.runs.pause(args.run_id) if args.action == "pause" else c.runs.resume(args.run_id)
        _json(run) if args.json else out.print(f"{run.id}: {run.status.value}", highlight=False)
    return 0


def cmd_runs_steps(args: argparse.Namespace) -> int:
    with _client(args) as c:
        listing = c.runs.steps(args.run_id)
        if args.json:
            _json(listing)
        else:
            for s in listing.steps:
                out.print(f"{s.index:>4}  {s.key}  [dim](event {s.event_id})[/]", highlight=False)
    return 0


def cmd_runs_fork(args: argparse.Namespace) -> int:
    with _client(args) as c:
        opts = _options(args.option or []) or None
        run = c.runs.fork(args.run_id, args.step_key, input=args.input, options=opts)
        if args.wait:
            run = c.runs.wait(run.id, timeout=args.timeout)
        _json(run) if args.json else out.print(f"{run.id}: {run.status.value}", highlight=False)
        return 0 if not args.wait or run.status.value == "succeeded" else Exit.RUN_NOT_OK


def cmd_approvals_ls(args: argparse.Namespace) -> int:
    with _client(args) as c:
        got = c.approvals.list(status=None if args.all else "pending", run_id=args.run)
        if args.json:
            _json(got)
            return 0
        t = Table("run", "approval", "status", "call")
        for a in got:
            t.add_row(a.run_id, a.id, a.status.value, _describe(a))
        out.print(t)
    return 0


def cmd_approvals_decide(args: argparse.Namespace) -> int:
    decision: Decision = _DECISIONS[args.decision]
    kw: dict[str, Any] = {"reason": args.reason}
    if decision == "approve":
        kw["answer"] = args.answer
    if decision == "edit":
        kw["arguments"] = json.loads(args.arguments)
    with _client(args) as c:
        res = c.approvals.decide(args.run_id, args.approval_id, decision, **kw)
        if args.json:
            _json(res)
        else:
            out.print(f"{res.approval.id}: {res.approval.status.value}; run {res.run.id} is {res.run.status.value}")
    return 0


def register(sub: Subparsers) -> None:
    """``conclave threads …`` and ``conclave approvals …``."""
    client_opts = add_client_options
    th = sub.add_parser("threads", help="conversations over several runs").add_subparsers(dest="th_cmd", required=True)
    p = th.add_parser("create", help="create a thread")
    p.add_argument("--id", help="its id (made when not given)")
    p.add_argument("--multitask", choices=["reject", "enqueue", "interrupt", "rollback"], default="reject")
    p.add_argument("--meta", action="append", metavar="KEY=VALUE")
    p.set_defaults(fn=cmd_threads_create)
    p = th.add_parser("ls", help="list threads, newest first")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(fn=cmd_threads_ls)
    p = th.add_parser("show", help="a thread and its runs")
    p.add_argument("thread_id")
    p.set_defaults(fn=cmd_threads_show)
    p = th.add_parser("send", help="send a follow-up: the thread's next run")
    p.add_argument("thread_id")
    p.add_argument("input")
    p.add_argument("--multitask", choices=["reject", "enqueue", "interrupt", "rollback"])
    p.add_argument("--kind")
    p.add_argument("--model")
    p.add_argument("--tools", action="append")
    p.add_argument("--wait", action="store_true")
    p.add_argument("--timeout", type=float)
    p.set_defaults(fn=cmd_threads_send)
    for q in th.choices.values():
        client_opts(q)

    ap = sub.add_parser("approvals", help="calls waiting for a person").add_subparsers(dest="ap_cmd", required=True)
    p = ap.add_parser("list", help="pending approvals (all with --all)")
    p.add_argument("--all", action="store_true")
    p.add_argument("--run", help="one run's")
    p.set_defaults(fn=cmd_approvals_ls)
    client_opts(p)
    for decision in ("approve", "deny", "edit"):
        p = ap.add_parser(decision, help=f"{decision} a pending call")
        p.add_argument("run_id")
        p.add_argument("approval_id")
        p.add_argument("--reason")
        if decision == "approve":
            p.add_argument("--answer", help="the answer to an ask_human question")
        if decision == "edit":
            p.add_argument("--arguments", required=True, help="the call's new arguments (JSON)")
        p.set_defaults(fn=cmd_approvals_decide, decision=decision)
        client_opts(p)


def register_runs(runs: Subparsers) -> None:
    """``conclave runs pause|resume|steps|fork`` (``runs.py`` hands its ``runs`` group over)."""
    client_opts = add_client_options
    for action in ("pause", "resume"):
        p = runs.add_parser(action, help=f"{action} a run")
        p.add_argument("run_id")
        p.set_defaults(fn=cmd_runs_control, action=action)
        client_opts(p)
    p = runs.add_parser("steps", help="a run's committed steps, in commit order")
    p.add_argument("run_id")
    p.set_defaults(fn=cmd_runs_steps)
    client_opts(p)
    p = runs.add_parser("fork", help="a new run from a committed step of this one")
    p.add_argument("run_id")
    p.add_argument("step_key")
    p.add_argument("--input", help="a new task text")
    p.add_argument("--option", action="append", metavar="KEY=VALUE")
    p.add_argument("--wait", action="store_true")
    p.add_argument("--timeout", type=float)
    p.set_defaults(fn=cmd_runs_fork)
    client_opts(p)
