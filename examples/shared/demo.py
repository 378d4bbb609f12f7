"""The cross-process part of `make demo`: Python, Node and Rust processes ask one cache with a
shared tier on Redis for the same cold key at the same moment; the value is computed once across
all of them. Each process is a small worker next to this file (worker.py, worker.mjs, and the
Rust one in core/examples/shared_demo.rs); they use serializer "json", so they share one key space.

Run from the repository root (after `make python-env node-env`):
    python examples/shared/demo.py
It uses $REDIS_URL if set, or else starts a redis-server (if on the PATH) on a free loopback port
and stops it afterwards."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PER_LANGUAGE = 2  # processes of each language


def start_redis() -> "tuple[subprocess.Popen, str]":
    """A throwaway redis-server on a free loopback port (no persistence)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:  # wait until it answers PING
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as c:
                c.sendall(b"PING\r\n")
                if c.recv(16).startswith(b"+PONG"):
                    return server, f"redis://127.0.0.1:{port}"
        except OSError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            raise SystemExit("redis-server did not start")
        time.sleep(0.05)


def rust_worker() -> str:
    """Builds the Rust worker (a no-op when it is up to date) and returns its path."""
    build = ["cargo", "build", "-q", "--release", "-p", "coopcache", "--features", "redis,tls,json"]
    subprocess.run([*build, "--example", "shared_demo"], cwd=ROOT, check=True)
    target = ROOT / os.environ.get("CARGO_TARGET_DIR", "target")
    return str(target / "release" / "examples" / "shared_demo")


def run(url: str, where: str) -> bool:
    cache = f"demo-{uuid.uuid4().hex[:8]}"  # a cold key space on every run (Redis drops it after 60 s idle)
    workers = [
        [sys.executable, str(HERE / "worker.py")],
        ["node", str(HERE / "worker.mjs")],
        [rust_worker()],
    ]
    cmds = [w + [url, cache] for _ in range(PER_LANGUAGE) for w in workers]
    print(
        f"shared: {len(cmds)} processes ({PER_LANGUAGE} Python, {PER_LANGUAGE} Node, {PER_LANGUAGE} Rust) "
        f"ask for one cold key of cache {cache!r} on {where}"
    )
    procs = [
        subprocess.Popen(c, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for c in cmds
    ]
    try:
        for p, c in zip(procs, cmds):  # each connects to Redis, then says it is ready
            if p.stdout.readline().strip() != "ready":
                raise SystemExit(f"{' '.join(Path(arg).name for arg in c[:-2])} failed to start (see above)")
        start = time.perf_counter()
        for p in procs:  # go!
            p.stdin.write("go\n")
            p.stdin.close()
        replies = [json.loads(p.stdout.readline()) for p in procs]
        wall_ms = (time.perf_counter() - start) * 1000
    except BaseException:  # a worker failed, or Ctrl-C: stop the others
        for p in procs:
            p.kill()
        raise
    for p in procs:
        p.wait()  # each exits once it has answered

    width = max(len(r["who"]) for r in replies) + 1
    for r in replies:
        what = "computed it" if r["computed"] else "got it from another process"
        print(f"  {r['who'] + ':':<{width}} {what}")
    computed = sum(r["computed"] for r in replies)
    same = all(r["value"] == replies[0]["value"] for r in replies)
    print(
        f"shared: computed {computed} time{'' if computed == 1 else 's'} across {len(replies)} processes "
        f"in {wall_ms:.0f} ms; every process got the same value: {str(same).lower()} "
        f"(computed by {replies[0]['value']['computed_by']})"
    )
    return computed == 1 and same


def main() -> int:
    url = os.environ.get("REDIS_URL")
    if url:
        return 0 if run(url, re.sub(r"//[^@/]*@", "//***@", url)) else 1  # never print a password
    if shutil.which("redis-server") is None:
        print(
            "shared: skipped (the cross-process demo needs Redis: set REDIS_URL=redis://host:port, "
            "or put redis-server on the PATH)"
        )
        return 0
    server, url = start_redis()
    try:
        return 0 if run(url, f"{url} (a redis-server started for this demo)") else 1
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    sys.exit(main())
