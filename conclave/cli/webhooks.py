"""``conclave webhooks add|ls|rm|secret|deliveries``: the tenant's subscriptions, its signing secret and
the delivery log (dead letters included), through ``client.webhooks``."""

from __future__ import annotations

import argparse
from datetime import datetime

from conclave.schema import DeliveryStatus

from .common import Exit, Subparsers, add_client_options, client, out, print_json

__all__ = ["register"]


def register(sub: Subparsers) -> None:
    wh = sub.add_parser("webhooks", help="webhook subscriptions, the signing secret, deliveries").add_subparsers(
        dest="webhooks_cmd", required=True
    )
    p = wh.add_parser("add", help="subscribe a URL to the tenant's run events")
    p.add_argument("url_to", metavar="URL")
    p.add_argument("--event", action="append", help="an event to deliver (repeatable; default run.finished)")
    p.add_argument("--description", default="")
    add_client_options(p)
    p.set_defaults(fn=cmd_add)
    p = wh.add_parser("ls", help="list subscriptions")
    add_client_options(p)
    p.set_defaults(fn=cmd_ls)
    p = wh.add_parser("rm", help="delete a subscription")
    p.add_argument("subscription_id")
    add_client_options(p)
    p.set_defaults(fn=cmd_rm)
    p = wh.add_parser("secret", help="create or rotate the signing secret (shown once)")
    add_client_options(p)
    p.set_defaults(fn=cmd_secret)
    p = wh.add_parser("deliveries", help="recent deliveries; --status dead lists the dead-lettered ones")
    p.add_argument("--status", choices=[s.value for s in DeliveryStatus])
    p.add_argument("--limit", type=int, default=50)
    add_client_options(p)
    p.set_defaults(fn=cmd_deliveries)


def _text(line: str) -> None:
    out.print(line, markup=False, highlight=False)


def when(v: datetime | None) -> str:
    """An instant to the second, or ``-``."""
    return v.isoformat(timespec="seconds") if v is not None else "-"


def cmd_add(args: argparse.Namespace) -> int:
    with client(args) as c:
        new = c.webhooks.subscribe(args.url_to, events=args.event or None, description=args.description)
    if args.json:
        print_json(new)
        return Exit.OK
    s = new.subscription
    _text(f"subscription {s.id}: {', '.join(s.events)} -> {s.url}")
    if new.secret:
        _text(f"signing secret (shown once): {new.secret}")
    return Exit.OK


def cmd_ls(args: argparse.Namespace) -> int:
    with client(args) as c:
        subs = c.webhooks.list()
    if args.json:
        print_json([s.model_dump(mode="json") for s in subs])
        return Exit.OK
    for s in subs:
        _text(f"{s.id}  {','.join(s.events)}  {s.url}  {s.description}".rstrip())
    return Exit.OK


def cmd_rm(args: argparse.Namespace) -> int:
    with client(args) as c:
        c.webhooks.delete(args.subscription_id)
    _text(f"deleted {args.subscription_id}")
    return Exit.OK


def cmd_secret(args: argparse.Namespace) -> int:
    with client(args) as c:
        new = c.webhooks.rotate_secret()
    if args.json:
        print_json(new)
        return Exit.OK
    _text(f"signing secret (shown once): {new.secret}")
    if new.previous_valid_until:
        _text(f"the previous secret also signs until {when(new.previous_valid_until)}")
    return Exit.OK


def cmd_deliveries(args: argparse.Namespace) -> int:
    with client(args) as c:
        rows = c.webhooks.deliveries(status=args.status, limit=args.limit)
    if args.json:
        print_json([d.model_dump(mode="json") for d in rows])
        return Exit.OK
    for d in rows:
        detail = f" HTTP {d.last_status_code}" if d.last_status_code else ""
        detail += f" {d.last_error}" if d.last_error and d.status is not DeliveryStatus.DELIVERED else ""
        _text(f"{d.id}  {d.status.value}  {d.type}  attempts={d.attempts}  {d.url}{detail}")
    return Exit.OK
