"""``conclave schedules add|ls|show|pause|resume|rm``: runs submitted on a cron schedule, through
``client.schedules``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from conclave.schema import Schedule

from .common import Exit, Subparsers, add_client_options, client, out, print_json
from .webhooks import when

__all__ = ["register"]


def register(sub: Subparsers) -> None:
    sc = sub.add_parser("schedules", help="scheduled runs (cron)").add_subparsers(dest="schedules_cmd", required=True)
    p = sc.add_parser("add", help="submit a task on every tick of a cron expression")
    p.add_argument("--cron", required=True, help="e.g. '0 9 * * 1-5' (6 fields: seconds last)")
    p.add_argument("--timezone", default="UTC", help="IANA time zone the expression is read in")
    p.add_argument("--name", default="")
    p.add_argument("--end-at", help="ISO 8601 time with a zone; no tick after it")
    p.add_argument("--missed", choices=["skip", "run_once"], default="skip")
    p.add_argument("--input", help="the task text (with --kind/--model), or give --task")
    p.add_argument("--kind", default="chat")
    p.add_argument("--model")
    p.add_argument("--task", help="a TaskSpec as a JSON file")
    add_client_options(p)
    p.set_defaults(fn=cmd_add)
    p = sc.add_parser("ls", help="list schedules")
    add_client_options(p)
    p.set_defaults(fn=cmd_ls)
    for name, fn, help_ in (
        ("show", cmd_show, "a schedule and where it stands"),
        ("pause", cmd_pause, "stop ticking until resumed"),
        ("resume", cmd_resume, "tick again (ticks missed while paused do not run)"),
        ("rm", cmd_rm, "delete a schedule"),
    ):
        p = sc.add_parser(name, help=help_)
        p.add_argument("schedule_id")
        add_client_options(p)
        p.set_defaults(fn=fn)


def _text(line: str) -> None:
    out.print(line, markup=False, highlight=False)


def _task(args: argparse.Namespace) -> dict[str, Any]:
    if args.task:
        loaded: dict[str, Any] = json.loads(Path(args.task).read_text())
        return loaded
    task: dict[str, Any] = {"kind": args.kind, "input": args.input}
    if args.model:
        task["model"] = args.model
    return task


def _show(s: Schedule, args: argparse.Namespace) -> int:
    if args.json:
        print_json(s)
        return Exit.OK
    _text(f"{s.id}  {s.status.value}  {s.cron!r} {s.timezone}  missed={s.missed}")
    _text(f"  next tick {when(s.next_tick_at)}  last tick {when(s.last_tick_at)}  runs {s.runs}")
    if s.last_run_id:
        _text(f"  last run {s.last_run_id}")
    return Exit.OK


def cmd_add(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "cron": args.cron,
        "timezone": args.timezone,
        "task": _task(args),
        "name": args.name,
        "missed": args.missed,
    }
    if args.end_at:
        body["end_at"] = args.end_at
    with client(args) as c:
        s = c.schedules.create(body)
    return _show(s, args)


def cmd_ls(args: argparse.Namespace) -> int:
    with client(args) as c:
        rows = c.schedules.list()
    if args.json:
        print_json([s.model_dump(mode="json") for s in rows])
        return Exit.OK
    for s in rows:
        _text(
            f"{s.id}  {s.status.value}  {s.cron!r} {s.timezone}  next={when(s.next_tick_at)}  runs={s.runs}  {s.name}"
        )
    return Exit.OK


def cmd_show(args: argparse.Namespace) -> int:
    with client(args) as c:
        s = c.schedules.get(args.schedule_id)
    return _show(s, args)


def cmd_pause(args: argparse.Namespace) -> int:
    with client(args) as c:
        s = c.schedules.pause(args.schedule_id)
    return _show(s, args)


def cmd_resume(args: argparse.Namespace) -> int:
    with client(args) as c:
        s = c.schedules.resume(args.schedule_id)
    return _show(s, args)


def cmd_rm(args: argparse.Namespace) -> int:
    with client(args) as c:
        c.schedules.delete(args.schedule_id)
    _text(f"deleted {args.schedule_id}")
    return Exit.OK
