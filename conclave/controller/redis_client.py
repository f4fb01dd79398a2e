"""The Redis client every part of the service uses: one pool configuration, and commands packed
by hiredis.

redis-py's asyncio connection packs every command in Python (an ``isinstance`` and an encode per
argument, then joins); its synchronous connection already packs with ``hiredis.pack_command``
when hiredis is installed, and so does this one. A commit is one ``EVALSHA`` of 15-30 arguments,
two per durable step: packing one took ~42 µs in Python and ~6 µs in C on the development machine.
Arguments of any type but ``str``, ``bytes`` and ``int`` (a ``float``, whose text the Python
encoder chooses, or a type it refuses) go through redis-py's own packer, so what reaches the
server is byte for byte what redis-py would send.
"""

from __future__ import annotations

from typing import Any

import hiredis
import redis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.driver_info import DriverInfo
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["connect"]

_PLAIN = frozenset((str, bytes, int))

#: What every connection tells the server in ``CLIENT SETINFO``. Given, redis-py does not look its own
#: version up in the installed packages' metadata for each new connection (``importlib.metadata``
#: scans ``sys.path``: 3% of a worker's samples while its pools filled under a 300-run load).
_DRIVER = DriverInfo(lib_version=redis.__version__)


def _hiredis_pack(conn: Any, args: tuple[Any, ...]) -> list[bytes] | None:
    """The command packed by hiredis, or None where redis-py's packer must decide."""
    if conn.encoder.encoding != "utf-8" or conn.encoder.encoding_errors != "strict":
        return None
    if not _PLAIN.issuperset(map(type, args)):  # by type: a bool is an int to isinstance, and redis-py refuses it
        return None
    name = args[0]
    if isinstance(name, str):
        args = (*name.encode().split(), *args[1:])  # "SCRIPT LOAD" is two words on the wire
    elif b" " in name:
        args = (*name.split(), *args[1:])
    return [hiredis.pack_command(args)]


class _Packing:
    def pack_command(self, *args: Any) -> list[bytes]:
        packed = _hiredis_pack(self, args)
        return packed if packed is not None else super().pack_command(*args)  # type: ignore[misc]


class PackedConnection(_Packing, Connection):
    """A TCP connection whose commands hiredis packs."""


class PackedSSLConnection(_Packing, SSLConnection):
    """A TLS connection whose commands hiredis packs."""


class PackedUnixConnection(_Packing, UnixDomainSocketConnection):
    """A Unix-socket connection whose commands hiredis packs."""


_BY_SCHEME = {"redis": PackedConnection, "rediss": PackedSSLConnection, "unix": PackedUnixConnection}


def connect(url: str, *, decode: bool = True, max_connections: int = 128) -> Redis:
    """A client that rides out a short outage (commands retry with backoff on connection errors)
    and never fails for want of a connection: with hundreds of runs in flight the pool makes a
    command wait for a free connection instead of raising "Too many connections" (redis-py's
    default pool does, at 100)."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=60,
        decode_responses=decode,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=8),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=10,
        socket_connect_timeout=2,
        driver_info=_DRIVER,
    )
    packed = _BY_SCHEME.get(url.split("://", 1)[0].lower())
    if packed is not None and issubclass(packed, pool.connection_class):
        pool.connection_class = packed
    return Redis(connection_pool=pool, auto_close_connection_pool=True)
