"""Loads the Lua scripts that make every state change of a run atomic.

Each script is the outbox helper (``outbox.lua``, which ``emit`` calls) + ``common.lua`` + the tenant and
ledger helpers + the steering helpers (``steer.lua``: the hooks the shared scripts call for pause,
approvals, threads and forks) + its own body, so a step's checkpoint, events, workspace writes, ledger
usage and the webhook deliveries its events ask for commit in one round trip (the design's "one Lua call
per step").
redis-py's ``Script`` re-loads a script after ``NOSCRIPT`` (e.g. after a Redis restart).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

__all__ = ["Scripts", "script_source"]


@cache
def _read(name: str) -> str:
    return resources.files("conclave.controller").joinpath("lua", f"{name}.lua").read_text()


#: The helpers every script starts with, in order (each may use the ones before it).
_PRELUDE = ("outbox", "common", "tenant", "ledger", "steer")


@cache
def script_source(name: str) -> str:
    """The full text of a script: shared helpers first, then the body."""
    return "\n".join(_read(part) for part in (*_PRELUDE, name))


class Scripts:
    """The registered scripts of one Redis client."""

    def __init__(self, redis: Redis) -> None:
        self.submit: AsyncScript = redis.register_script(script_source("submit"))
        self.claim: AsyncScript = redis.register_script(script_source("claim"))
        self.commit: AsyncScript = redis.register_script(script_source("commit"))
        self.finish: AsyncScript = redis.register_script(script_source("finish"))
        self.cancel: AsyncScript = redis.register_script(script_source("cancel"))
        self.renew: AsyncScript = redis.register_script(script_source("renew"))
        self.reserve: AsyncScript = redis.register_script(script_source("reserve"))
        self.set_caps: AsyncScript = redis.register_script(script_source("set_caps"))
        self.poison: AsyncScript = redis.register_script(script_source("poison"))
        self.rotate_secret: AsyncScript = redis.register_script(script_source("rotate_secret"))
        self.delivery_done: AsyncScript = redis.register_script(script_source("delivery_done"))
        self.schedule_claim: AsyncScript = redis.register_script(script_source("schedule_claim"))
        self.schedule_done: AsyncScript = redis.register_script(script_source("schedule_done"))
        self.schedule_skip: AsyncScript = redis.register_script(script_source("schedule_skip"))
        self.schedule_status: AsyncScript = redis.register_script(script_source("schedule_status"))
        self.renew_holds: AsyncScript = redis.register_script(script_source("renew_holds"))
        self.call_reserve: AsyncScript = redis.register_script(script_source("call_reserve"))
        self.call_commit: AsyncScript = redis.register_script(script_source("call_commit"))
        self.purge: AsyncScript = redis.register_script(script_source("purge"))
        # steering (conclave.controller.redis_steer)
        self.request_pause: AsyncScript = redis.register_script(script_source("request_pause"))
        self.pause: AsyncScript = redis.register_script(script_source("pause"))
        self.resume: AsyncScript = redis.register_script(script_source("resume"))
        self.wait: AsyncScript = redis.register_script(script_source("wait"))
        self.decide: AsyncScript = redis.register_script(script_source("decide"))
        self.expire: AsyncScript = redis.register_script(script_source("expire"))
        self.thread_create: AsyncScript = redis.register_script(script_source("thread_create"))
        self.thread_message: AsyncScript = redis.register_script(script_source("thread_message"))
        self.fork: AsyncScript = redis.register_script(script_source("fork"))
