"""A minimal Redis client for the tests (RESP over a socket; no dependency)."""

from __future__ import annotations

import socket
from typing import Any, Union
from urllib.parse import urlparse

Arg = Union[str, bytes, int, float]


def _encode(args: tuple[Arg, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def _read(f: Any) -> Any:
    line = f.readline()
    if not line:
        raise ConnectionError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read(f) for _ in range(n)]
    raise RuntimeError(f"unexpected reply {line!r}")


def command(where: Union[int, str], *args: Arg) -> Any:
    """Runs one command on Redis at `where` (a port on 127.0.0.1, or a redis:// URL)."""
    setup: list[tuple[Arg, ...]] = []
    if isinstance(where, int):
        host, port = "127.0.0.1", where
    else:
        u = urlparse(where)
        host, port = u.hostname or "127.0.0.1", u.port or 6379
        if u.password is not None:
            setup.append(("AUTH", u.username or "default", u.password))
        if u.path.strip("/"):
            setup.append(("SELECT", u.path.strip("/")))
    with socket.create_connection((host, port), timeout=5) as s:
        with s.makefile("rb") as f:
            for cmd in setup:
                s.sendall(_encode(cmd))
                _read(f)
            s.sendall(_encode(args))
            return _read(f)
