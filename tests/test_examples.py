"""Every example runs as a user would run it (from the repository root) and says it computed once.

`make test-examples` builds the Rust examples first, then runs this file. Examples that need Redis
get a real redis-server on a free loopback port, through their argument or REDIS_URL.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List, Optional

import pytest
import redis_server

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable  # the virtualenv's python, with coopcache installed


def run(cmd: List[str], redis_url: Optional[str] = None, path: Optional[str] = None) -> str:
    """Runs one example; it must exit 0. Returns what it printed."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    if redis_url:
        env["REDIS_URL"] = redis_url
    if path is not None:
        env["PATH"] = path
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, f"{' '.join(cmd)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}"
    return p.stdout


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server.running() as port:
        yield f"redis://127.0.0.1:{port}"


# -- make demo: the stampedes ------------------------------------------------------------------


def says_computed_once(out: str, lang: str, callers: str) -> bool:
    line = (
        rf"^{lang}: {callers} on one cold key: computed 1 time in \d+ ms; "
        r"every caller got the same value: true$"
    )
    return re.search(line, out, re.M) is not None


def shared_by_all(out: str, callers: int) -> List[bool]:
    """For each stats line: one computation, and every other caller joined it or, if it came
    after the value was stored, hit it (how many come late depends on the scheduler: the
    demos release their callers at once, but a thread may start after the computation ends)."""
    found = []
    for line in re.findall(r"^  stats: (.*)$", out, re.M):
        s = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}
        found.append(s["computations"] == 1 and s["coalesced"] + s["hits"] == callers - 1)
    return found


def test_rust_stampede() -> None:
    out = run(["cargo", "run", "-q", "--release", "-p", "coopcache", "--example", "stampede"])
    assert says_computed_once(out, "rust", "1,000 threads"), out
    assert says_computed_once(out, "rust", "10,000 tokio tasks"), out
    assert shared_by_all(out, 1000)[0] and shared_by_all(out, 10_000)[1], out


def test_python_stampede() -> None:
    out = run([PY, "examples/python/stampede.py"])
    assert says_computed_once(out, "python", "1,000 threads"), out
    assert says_computed_once(out, "python", "1,000 asyncio tasks"), out
    assert shared_by_all(out, 1000) == [True, True], out


def test_node_stampede() -> None:
    out = run(["node", "examples/node/stampede.mjs"])
    assert says_computed_once(out, "node", "10,000 promises"), out
    assert shared_by_all(out, 10_000) == [True], out


# -- the use-case examples ---------------------------------------------------------------------


WEB_HANDLERS = [[PY, "examples/python/web_handler.py"], ["node", "examples/node/web_handler.mjs"]]


@pytest.mark.parametrize("cmd", WEB_HANDLERS)
def test_web_handler_queries_the_database_once(cmd: List[str]) -> None:
    out = run(cmd)
    assert re.search(r"50 concurrent requests for GET /users/42 .*: the database was queried 1 time;", out)
    assert re.search(r'every response was \{"id": ?42, ?"name": ?"Ada", ?"plan": ?"pro"\}: true', out), out
    assert " entries=1" in out, out


def test_asyncio_fanout_computes_once_per_key() -> None:
    out = run([PY, "examples/python/asyncio_fanout.py"])
    assert "1,000 tasks on 5 keys" in out and "computed 5 times, once per key: true" in out, out
    assert "fetches per currency: EUR=1 GBP=1 JPY=1 CHF=1 SEK=1" in out, out


def test_node_worker_threads_share_one_cache_with_shared_process() -> None:
    out = run(["node", "examples/node/workers.mjs"])
    assert "4 workers x 250 calls: the report was built 1 time" in out, out
    assert "main thread: built by thread" in out and "remoteHits: 1" in out, out


SHARED = [
    ([PY, "examples/python/shared.py"], "python shared mode: 4 processes x 8 threads, computed 1 time,"),
    (["node", "examples/node/shared.mjs"], "node shared mode: 4 processes x 100 callers, computed 1 time,"),
]


@pytest.mark.parametrize("cmd, expected", SHARED)
def test_shared_examples_compute_once_across_processes(redis_url: str, cmd: List[str], expected: str) -> None:
    out = run([*cmd, redis_url])
    assert expected in out and "every caller got the same value: true" in out, out


# -- make demo: the cross-process demo ---------------------------------------------------------


def check_cross_process(out: str) -> None:
    assert "shared: 6 processes (2 Python, 2 Node, 2 Rust) ask for one cold key" in out, out
    who = re.findall(r"^  (python|node|rust) pid \d+: +(computed it|got it from another process)$", out, re.M)
    assert sorted(lang for lang, _ in who) == ["node"] * 2 + ["python"] * 2 + ["rust"] * 2, out
    assert [what for _, what in who].count("computed it") == 1, out
    total = r"^shared: computed 1 time across 6 processes in \d+ ms; every process got the same value: true "
    assert re.search(total, out, re.M), out


def test_cross_process_demo_with_redis_url(redis_url: str) -> None:
    out = run([PY, "examples/shared/demo.py"], redis_url=redis_url)
    check_cross_process(out)
    assert redis_url in out


def test_cross_process_demo_starts_and_stops_its_own_redis_server() -> None:
    out = run([PY, "examples/shared/demo.py"])
    check_cross_process(out)
    port = re.search(r"on redis://127\.0\.0\.1:(\d+) \(a redis-server started for this demo\)", out)
    assert port, out
    assert not redis_server.answers_ping(int(port.group(1))), "the demo's redis-server is still running"


def test_cross_process_demo_without_redis_says_how_to_enable_it(tmp_path: Path) -> None:
    out = run([PY, "examples/shared/demo.py"], path=str(tmp_path))  # no redis-server on this PATH
    assert out.count("\n") == 1 and out.startswith("shared: skipped") and "REDIS_URL" in out, out


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
