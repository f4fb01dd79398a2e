"""A raw HTTP/1.1 upload over a socket, for body-limit tests.

HTTP clients either buffer a body or give up on the first write error once the server stops
reading, and then never show the 413 the server sent. This one streams a body (chunked, or with a
declared ``Content-Length``), stops as soon as the server answers or closes, and reads the answer.
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Upload:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int  # body bytes the socket accepted before the server answered or closed

    def json(self) -> Any:
        return json.loads(self.body)


def _frame(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def upload(
    base_url: str,
    path: str,
    total: int,
    *,
    chunk: int = 64 * 1024,
    declared: int | None = None,
    headers: dict[str, str] | None = None,
    prefix: bytes = b'{"kind": "chat", "input": "',
    timeout: float = 60.0,
) -> Upload:
    """POST ``total`` body bytes to ``path``: chunked unless ``declared`` gives a Content-Length."""
    url = urlsplit(base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        head = f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        head += f"Content-Length: {declared}\r\n" if declared is not None else "Transfer-Encoding: chunked\r\n"
        for k, v in (headers or {}).items():
            head += f"{k}: {v}\r\n"
        sock.sendall((head + "\r\n").encode())
        sock.setblocking(False)

        def pieces() -> Iterator[bytes]:
            produced = 0
            while produced < total:
                n = min(chunk, total - produced)
                data = (prefix + b"x" * n)[:n] if produced == 0 else b"x" * n
                produced += n
                yield data if declared is not None else _frame(data)
            if declared is None:
                yield b"0\r\n\r\n"

        sent = 0
        body = pieces()
        pending = next(body, None)
        end = time.monotonic() + timeout
        while pending is not None:
            readable, writable, _ = select.select([sock], [sock], [], 1.0)
            if readable:  # the server answered (or closed) before the body was all sent
                break
            if time.monotonic() > end:
                raise TimeoutError(f"upload of {total} bytes did not finish in {timeout} s")
            if writable:
                try:
                    n_sent = sock.send(pending)
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += n_sent
                pending = pending[n_sent:] or next(body, None)
        sock.setblocking(True)
        sock.settimeout(timeout)
        return _read_response(sock, sent)
    finally:
        sock.close()


def _read_response(sock: socket.socket, sent: int) -> Upload:
    raw = bytearray()
    while b"\r\n\r\n" not in raw:
        try:
            piece = sock.recv(65536)
        except ConnectionResetError:
            piece = b""
        if not piece:
            raise ConnectionError(f"the server closed the connection without an answer (after {sent} bytes)")
        raw += piece
    head, _, rest = bytes(raw).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    body = bytearray(rest)
    while len(body) < length:
        piece = sock.recv(65536)
        if not piece:
            break
        body += piece
    return Upload(status=status, headers=headers, body=bytes(body[:length]), sent=sent)
