"""Python, Node and Rust processes share one key space and one computation (the README's "Shared mode").

Each worker (tests/python/shared_worker.py, tests/node/shared_worker.mjs, the Rust example
`shared_worker`) asks cache CACHE on the same Redis for ("user", 42) with the JSON serializer; the
computation counts itself with INCR coopcache-test:computed:CACHE. Started together they must
compute once and all print the same value; started later they read it without computing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List

import pytest
import redis_server

ROOT = Path(__file__).resolve().parents[2]
RUST_WORKER = ROOT / os.environ.get("CARGO_TARGET_DIR", "target") / "release" / "examples" / "shared_worker"


@pytest.fixture
def redis_url() -> Iterator[str]:
    with redis_server.running() as port:
        yield f"redis://127.0.0.1:{port}"


def workers(url: str, cache: str) -> List[List[str]]:
    return [
        [sys.executable, str(ROOT / "tests" / "python" / "shared_worker.py"), url, cache],
        ["node", str(ROOT / "tests" / "node" / "shared_worker.mjs"), url, cache],
        [str(RUST_WORKER), url, cache],
    ]


def run_together(cmds: List[List[str]]) -> List[dict]:
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in cmds]
    values = []
    for p, c in zip(procs, cmds):
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, f"{c[0]} failed: {err}"
        values.append(json.loads(out.strip().splitlines()[-1]))
    return values


def computed(url: str, cache: str) -> int:
    port = int(url.rsplit(":", 1)[1])
    return int(redis_server.cli(port, "GET", f"coopcache-test:computed:{cache}") or 0)


def test_python_node_and_rust_compute_a_key_once(redis_url: str) -> None:
    assert RUST_WORKER.exists(), "make test-cross builds the Rust worker first"
    cmds = workers(redis_url, "cross") * 3  # three processes of each language, started together
    values = run_together(cmds)
    assert computed(redis_url, "cross") == 1
    assert all(v == values[0] for v in values), values
    assert values[0]["value"] in ("from python", "from node", "from rust")


def test_a_process_started_later_reads_the_value_in_any_language(redis_url: str) -> None:
    run_together(workers(redis_url, "later")[:1])
    first = computed(redis_url, "later")
    values = run_together(workers(redis_url, "later"))
    assert computed(redis_url, "later") == first == 1
    assert all(v == {"value": "from python"} for v in values), values


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
