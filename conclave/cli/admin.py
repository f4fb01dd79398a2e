"""``conclave keys create|ls|revoke``: API keys, through the admin routes (an admin key, or
``CONCLAVE_ADMIN_KEY`` as ``--api-key``, when auth is on)."""

from __future__ import annotations

import argparse

from .common import Exit, Subparsers, add_client_options, client, out, print_json

__all__ = ["register"]


def register(sub: Subparsers) -> None:
    keys = sub.add_parser(
        "keys", help="API keys (admin routes: an admin key, or CONCLAVE_ADMIN_KEY, when auth is on)"
    ).add_subparsers(dest="keys_cmd", required=True)
    k = keys.add_parser("create")
    add_client_options(k)
    k.add_argument("--tenant", required=True)
    k.add_argument("--name")
    k.add_argument("--admin", action="store_true", help="the key may manage keys and tenants")
    k.set_defaults(fn=cmd_keys_create)
    k = keys.add_parser("ls")
    add_client_options(k)
    k.add_argument("--tenant")
    k.set_defaults(fn=cmd_keys_ls)
    k = keys.add_parser("revoke")
    add_client_options(k)
    k.add_argument("key_id")
    k.set_defaults(fn=cmd_keys_revoke)


def cmd_keys_create(args: argparse.Namespace) -> int:
    with client(args) as c:
        new = c.admin.create_key(args.tenant, name=args.name or "", admin=args.admin)
    if args.json:
        print_json(new)
    else:
        out.print(f"key {new.info.id} for tenant {new.info.tenant}:\n{new.key}", markup=False, highlight=False)
        out.print("[dim](shown once; only its hash is stored)[/]")
    return Exit.OK


def cmd_keys_ls(args: argparse.Namespace) -> int:
    with client(args) as c:
        keys = c.admin.list_keys(args.tenant)
    if args.json:
        print_json([k.model_dump() for k in keys])
    else:
        for k in keys:
            role = " admin" if k.admin else ""
            state = "revoked" if k.revoked else "active"
            out.print(f"{k.id}  tenant={k.tenant}  name={k.name}  {state}{role}", markup=False, highlight=False)
    return Exit.OK


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    with client(args) as c:
        key = c.admin.revoke_key(args.key_id)
    print_json(key) if args.json else out.print(f"revoked {key.id}")
    return Exit.OK
