"""``conclave tenants …``: tenant and key budgets, spend and retention (admin routes: an admin key, or
``CONCLAVE_ADMIN_KEY`` as ``--api-key``, when auth is on)."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from conclave.schema import PERIODS, ScopeBudget, TenantSpend

from .common import Exit, Subparsers, add_client_options, client, out, print_json

__all__ = ["register"]

_LIMITS = ("usd", "input_tokens", "output_tokens", "model_calls")


def register(sub: Subparsers) -> None:
    tenants = sub.add_parser("tenants", help="tenant and key budgets, spend, retention (admin)").add_subparsers(
        dest="tenants_cmd", required=True
    )
    t = tenants.add_parser("set-budget", help="cap a tenant (or one of its keys) per period")
    t.add_argument("tenant", help="the tenant (ignored with --key)")
    t.add_argument("--key", help="cap this API key instead of the whole tenant")
    t.add_argument("--period", choices=PERIODS, default="monthly")
    t.add_argument("--usd", type=float)
    t.add_argument("--input-tokens", type=int)
    t.add_argument("--output-tokens", type=int)
    t.add_argument("--model-calls", type=int)
    t.add_argument("--clear", action="store_true", help="remove this period's caps")
    add_client_options(t)
    t.set_defaults(fn=cmd_set_budget)
    t = tenants.add_parser("budget", help="show a tenant's (or a key's) budget")
    t.add_argument("tenant")
    t.add_argument("--key")
    add_client_options(t)
    t.set_defaults(fn=cmd_budget)
    t = tenants.add_parser("spend", help="what a tenant (or a key) spent this day, this month, and in all")
    t.add_argument("tenant")
    t.add_argument("--key")
    add_client_options(t)
    t.set_defaults(fn=cmd_spend)
    t = tenants.add_parser("set-retention", help="days a tenant's finished runs are kept")
    t.add_argument("tenant")
    g = t.add_mutually_exclusive_group(required=True)
    g.add_argument("--days", type=float)
    g.add_argument("--default", action="store_true", help="use the deployment's default")
    add_client_options(t)
    t.set_defaults(fn=cmd_set_retention)


def cmd_set_budget(args: argparse.Namespace) -> int:
    caps = {k: getattr(args, k) for k in _LIMITS if getattr(args, k) is not None}
    with client(args) as c:
        current = c.tenants.key_budget(args.key) if args.key else c.tenants.budget(args.tenant)
        periods: dict[str, Any] = {p: lim.model_dump(exclude_none=True) for p, lim in current.periods.items()}
        if args.clear:
            periods.pop(args.period, None)
        else:
            if not caps:
                out.print("name at least one cap (--usd, --input-tokens, --output-tokens, --model-calls) or --clear")
                return Exit.USAGE
            periods[args.period] = {**periods.get(args.period, {}), **caps}
        budget = ScopeBudget.model_validate({"periods": periods})
        new = c.tenants.set_key_budget(args.key, budget) if args.key else c.tenants.set_budget(args.tenant, budget)
    _show_budget(new, args)
    return Exit.OK


def cmd_budget(args: argparse.Namespace) -> int:
    with client(args) as c:
        budget = c.tenants.key_budget(args.key) if args.key else c.tenants.budget(args.tenant)
    _show_budget(budget, args)
    return Exit.OK


def _show_budget(budget: ScopeBudget, args: argparse.Namespace) -> None:
    if args.json:
        print_json(budget)
        return
    who = f"key {args.key}" if args.key else f"tenant {args.tenant}"
    if not budget.periods:
        out.print(f"{who}: no budget", markup=False)
        return
    for period, limits in budget.periods.items():
        caps = ", ".join(f"{k}={v}" for k, v in limits.model_dump(exclude_none=True).items())
        out.print(f"{who} {period}: {caps}", markup=False)


def cmd_spend(args: argparse.Namespace) -> int:
    with client(args) as c:
        spend = c.tenants.key_spend(args.key) if args.key else c.tenants.spend(args.tenant)
    if args.json:
        print_json([s.model_dump(mode="json") for s in spend])
        return Exit.OK
    for s in spend:
        out.print(_spend_table(s))
    return Exit.OK


def _usd(v: float) -> str:
    return f"${v:.6f}"


def _count(v: float) -> str:
    return f"{v:.0f}"


def _spend_table(s: TenantSpend) -> Table:
    t = Table(title=f"{s.scope} · {s.period} ({s.period_id})")
    for col in ("limit", "cap", "used", "held", "left", "over cap"):
        t.add_column(col, justify="right" if col != "limit" else "left")
    for line in s.lines:
        fmt = _usd if line.limit == "usd" else _count
        cap = "-" if line.cap is None else fmt(line.cap)
        left = "-" if line.left is None else fmt(line.left)
        t.add_row(line.limit, cap, fmt(line.used), fmt(line.reserved), left, fmt(line.over))
    return t


def cmd_set_retention(args: argparse.Namespace) -> int:
    with client(args) as c:
        res = c.tenants.set_retention(args.tenant, None if args.default else args.days)
    if args.json:
        print_json(res)
    else:
        kept = "for ever" if res.days is None else f"{res.days:g} days"
        out.print(f"tenant {res.tenant}: finished runs are kept {kept}", markup=False)
    return Exit.OK
