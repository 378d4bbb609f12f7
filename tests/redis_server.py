"""A real redis-server on a free loopback port, for the suites under tests/ (README snippets,
examples, cross-language). Importable from any of them: pyproject's pytest `pythonpath` has tests/."""

from __future__ import annotations

import socket
import subprocess
import time
from contextlib import contextmanager
from typing import Iterator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(port: int, *args: str) -> str:
    """`redis-cli -p PORT ARGS...`'s output."""
    out = subprocess.run(
        ["redis-cli", "-p", str(port), *args], capture_output=True, text=True, check=True, timeout=30
    )
    return out.stdout.strip()


def answers_ping(port: int) -> bool:
    """Whether a Redis server answers on the port (without redis-cli, which retries)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as c:
            c.sendall(b"PING\r\n")
            return c.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def running() -> Iterator[int]:
    """Starts redis-server (no persistence) on a free port, yields the port, and stops it."""
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not answers_ping(port):
            assert server.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)
        yield port
    finally:
        server.kill()
        server.wait()
