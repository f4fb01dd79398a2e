"""Ids that must never repeat within a run — a commit's (the store applies a commit id once), a
reservation's (a retried hold is recognised by it) — made without a system call each.

``secrets.token_hex`` reads the kernel's random source on every call; a worker makes two or three of
these ids per durable step. Here a process draws 48 random bits once (again in a forked child, which
would otherwise repeat its parent's ids) and counts: two processes' ids differ in the random part, one
process's in the count.
"""

from __future__ import annotations

import itertools
import os
import secrets

__all__ = ["unique_id"]

_prefix = ""
_count = itertools.count()


def _reseed() -> None:
    global _prefix, _count
    _prefix = secrets.token_hex(6)
    _count = itertools.count()


_reseed()
os.register_at_fork(after_in_child=_reseed)


def unique_id() -> str:
    """A new id: this process's random prefix and its next count, in hex."""
    return f"{_prefix}{next(_count):x}"
