"""``conclave webhooks …`` and ``conclave schedules …``: thin over the SDK's sub-clients.

``register(sub, client_opts=…, client=…)`` adds both command groups to the CLI's sub-parsers; the
CLI hands in its own option and client helpers so both modules speak the same flags.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["register"]

ClientFactory = Callable[[argparse.Namespace], Any]


def _write(line: str) -> None:
    sys.stdout.write(line + "\n")


def _dump(obj: Any) -> None:
    if isinstance(obj, list):
        _write(json.dumps([o.model_dump(mode="json") for o in obj], indent=2))
    else:
        _write(obj.model_dump_json(indent=2))


def _when(v: Any) -> str:
    return v.isoformat(timespec="seconds") if v is not None else "-"


def _webhooks(args: argparse.Namespace, client: ClientFactory) -> int:
    with client(args) as c:
        cmd = args.wh_cmd
        if cmd == "add":
            new = c.webhooks.subscribe(args.url_to, events=args.event or None, description=args.description)
            if args.json:
                _dump(new)
                return 0
            s = new.subscription
            _write(f"subscription {s.id}: {', '.join(s.events)} -> {s.url}")
            if new.secret:
                _write(f"signing secret (shown once): {new.secret}")
        elif cmd == "ls":
            subs = c.webhooks.list()
            if args.json:
                _dump(subs)
            for s in [] if args.json else subs:
                _write(f"{s.id}  {','.join(s.events)}  {s.url}  {s.description}".rstrip())
        elif cmd == "rm":
            c.webhooks.delete(args.subscription_id)
            _write(f"deleted {args.subscription_id}")
        elif cmd == "secret":
            new = c.webhooks.rotate_secret()
            if args.json:
                _dump(new)
                return 0
            _write(f"signing secret (shown once): {new.secret}")
            if new.previous_valid_until:
                _write(f"the previous secret also signs until {_when(new.previous_valid_until)}")
        else:
            rows = c.webhooks.deliveries(status=args.status, limit=args.limit)
            if args.json:
                _dump(rows)
            for d in [] if args.json else rows:
                detail = f" HTTP {d.last_status_code}" if d.last_status_code else ""
                detail += f" {d.last_error}" if d.last_error and d.status.value != "delivered" else ""
                _write(f"{d.id}  {d.status.value}  {d.type}  attempts={d.attempts}  {d.url}{detail}")
    return 0


def _task(args: argparse.Namespace) -> dict[str, Any]:
    if args.task:
        loaded: dict[str, Any] = json.loads(Path(args.task).read_text())
        return loaded
    task: dict[str, Any] = {"kind": args.kind, "input": args.input}
    if args.model:
        task["model"] = args.model
    return task


def _schedules(args: argparse.Namespace, client: ClientFactory) -> int:
    with client(args) as c:
        cmd = args.sc_cmd
        if cmd == "add":
            body: dict[str, Any] = {
                "cron": args.cron,
                "timezone": args.timezone,
                "task": _task(args),
                "name": args.name,
                "missed": args.missed,
            }
            if args.end_at:
                body["end_at"] = args.end_at
            s = c.schedules.create(body)
        elif cmd == "ls":
            rows = c.schedules.list()
            if args.json:
                _dump(rows)
            for s in [] if args.json else rows:
                _write(
                    f"{s.id}  {s.status.value}  {s.cron!r} {s.timezone}  next={_when(s.next_tick_at)}  runs={s.runs}  {s.name}"
                )
            return 0
        elif cmd == "rm":
            c.schedules.delete(args.schedule_id)
            _write(f"deleted {args.schedule_id}")
            return 0
        else:
            s = getattr(c.schedules, {"show": "get", "pause": "pause", "resume": "resume"}[cmd])(args.schedule_id)
        if args.json:
            _dump(s)
        else:
            _write(f"{s.id}  {s.status.value}  {s.cron!r} {s.timezone}  missed={s.missed}")
            _write(f"  next tick {_when(s.next_tick_at)}  last tick {_when(s.last_tick_at)}  runs {s.runs}")
            if s.last_run_id:
                _write(f"  last run {s.last_run_id}")
    return 0


def register(sub: Any, *, client_opts: Callable[[argparse.ArgumentParser], None], client: ClientFactory) -> None:
    """Add ``webhooks`` and ``schedules`` to the CLI's sub-parsers."""
    wh = sub.add_parser("webhooks", help="webhook subscriptions, the signing secret, deliveries").add_subparsers(
        dest="wh_cmd", required=True
    )
    p = wh.add_parser("add", help="subscribe a URL to the tenant's run events")
    p.add_argument("url_to", metavar="URL")
    p.add_argument("--event", action="append", help="an event to deliver (repeatable; default run.finished)")
    p.add_argument("--description", default="")
    p = wh.add_parser("ls", help="list subscriptions")
    p = wh.add_parser("rm", help="delete a subscription")
    p.add_argument("subscription_id")
    wh.add_parser("secret", help="create or rotate the signing secret (shown once)")
    p = wh.add_parser("deliveries", help="recent deliveries; --status dead lists the dead-lettered ones")
    p.add_argument("--status", choices=["pending", "delivered", "dead", "dropped"])
    p.add_argument("--limit", type=int, default=50)
    for name, cmd in wh.choices.items():
        client_opts(cmd)
        cmd.set_defaults(fn=lambda a: _webhooks(a, client))
        del name

    sc = sub.add_parser("schedules", help="scheduled runs (cron)").add_subparsers(dest="sc_cmd", required=True)
    p = sc.add_parser("add", help="submit a task on every tick of a cron expression")
    p.add_argument("--cron", required=True, help="e.g. '0 9 * * 1-5' (6 fields: seconds last)")
    p.add_argument("--timezone", default="UTC")
    p.add_argument("--name", default="")
    p.add_argument("--end-at", help="ISO 8601 time with a zone; no tick after it")
    p.add_argument("--missed", choices=["skip", "run_once"], default="skip")
    p.add_argument("--input", help="the task text (with --kind/--model), or give --task")
    p.add_argument("--kind", default="chat")
    p.add_argument("--model")
    p.add_argument("--task", help="a TaskSpec as a JSON file")
    sc.add_parser("ls", help="list schedules")
    for name in ("show", "pause", "resume", "rm"):
        sc.add_parser(name).add_argument("schedule_id")
    for cmd in sc.choices.values():
        client_opts(cmd)
        cmd.set_defaults(fn=lambda a: _schedules(a, client))
