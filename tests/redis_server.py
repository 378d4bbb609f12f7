"""A real redis-server on a free loopback port (or a Redis Cluster of six), for the suites under
tests/ (README snippets, examples, cross-language, tests/python). Importable from any of them:
pyproject's pytest `pythonpath` has tests/."""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from contextlib import ExitStack, contextmanager
from typing import Callable, Iterator


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


def server_args(port: int, *extra: str) -> list[str]:
    """The command line of a test redis-server on `port`: loopback only, nothing written to disk
    (no RDB snapshots, no AOF), so a test's server is its own and leaves nothing behind; then
    `extra`. Every test server (single or cluster node) starts from these."""
    return ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            *extra]


@contextmanager
def _server(port: int, *extra: str, cwd: "str | None" = None) -> Iterator[int]:
    """A redis-server started with `server_args`, once it answers PING; killed on exit."""
    server = subprocess.Popen(server_args(port, *extra), stdout=subprocess.DEVNULL, cwd=cwd)
    try:
        deadline = time.monotonic() + 20
        while not answers_ping(port):
            assert server.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)
        yield port
    finally:
        server.kill()
        server.wait()


@contextmanager
def running() -> Iterator[int]:
    """Starts redis-server (no persistence) on a free port, yields the port, and stops it."""
    with _server(free_port()) as port:
        yield port


def _until(what: str, cond: "Callable[[], bool]") -> None:
    deadline = time.monotonic() + 30
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


@contextmanager
def cluster() -> Iterator[str]:
    """A Redis Cluster of six nodes on free loopback ports (three masters, a replica each) in a
    temporary directory, joined by `redis-cli --cluster create`; yields its `redis+cluster://`
    URL (every node a seed) once every slot is served. Every node is killed and the directory
    removed on exit, also when the test fails."""
    ports: list[int] = []
    while len(ports) < 6:
        # Six different ones (a port released can be handed out again), each with its cluster
        # bus port (10000 higher) a port too.
        p = free_port()
        if p not in ports and p + 10000 <= 65535:
            ports.append(p)
    with ExitStack() as stack:
        d = stack.enter_context(tempfile.TemporaryDirectory(prefix="coopcache-cluster-"))
        for p in ports:
            # A file of its own for each node's RDB: a replica's full sync goes through it, so
            # with one shared name replicas syncing at once could load another master's data.
            stack.enter_context(_server(p, "--cluster-enabled", "yes", "--cluster-config-file",
                                        f"nodes-{p}.conf", "--dbfilename", f"dump-{p}.rdb", cwd=d))
        cli(ports[0], "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
            "--cluster-replicas", "1", "--cluster-yes")
        _until("every node sees the cluster ok",
               lambda: all("cluster_state:ok" in cli(p, "CLUSTER", "INFO") for p in ports))
        yield "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports)

