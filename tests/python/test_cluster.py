"""Shared mode on a Redis Cluster (the README's "On a Redis Cluster"), through the public
`redis+cluster://` URL: one six-node cluster for this file (tests/redis_server.py), processes
that are real subprocesses (shared_child.py)."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from typing import Any, Iterator

import coopcache
import pytest
import redis_server
from helpers import wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD = os.path.join(HERE, "shared_child.py")
_ids = itertools.count()


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """The cluster's URL; every node is stopped after the file's tests, also when one fails."""
    for tool in ("redis-server", "redis-cli"):
        assert shutil.which(tool), f"{tool} must be installed (.ci/run installs it)"
    with redis_server.cluster() as url:
        yield url


def cache_name() -> str:
    return f"cluster-{os.getpid()}-{next(_ids)}"


def spawn(url: str, cache: str, **cfg: Any) -> subprocess.Popen[str]:
    cfg.update(url=url, cache=cache, count=False)
    return subprocess.Popen(
        [sys.executable, CHILD, json.dumps(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def report(p: subprocess.Popen[str], timeout: float = 60) -> dict[str, Any]:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err
    return dict(json.loads(out.splitlines()[0]))


def test_two_processes_on_one_cold_key_compute_once(cluster: str) -> None:
    c = cache_name()
    procs = [spawn(cluster, c, key=["user", 42], threads=3, sleep=0.3, value={"n": 42}) for _ in range(2)]
    reports = [report(p) for p in procs]
    assert [r for rep in reports for r in rep["results"]] == [{"ok": {"n": 42}}] * 6
    assert sum(rep["computed"] for rep in reports) == 1
    assert sum(rep["stats"]["leases_won"] for rep in reports) == 1


def test_invalidate_reaches_another_process(cluster: str) -> None:
    c = cache_name()
    coopcache.configure(c, redis_url=cluster, serializer="json")
    key = ("user", 7)
    warm = itertools.count()  # a fresh key each time: the first one once the tier is up wins a lease
    wait_until(
        lambda: (
            coopcache.cached(c, ("warm", next(warm)), lambda: 0) == 0 and coopcache.stats(c)["leases_won"] > 0
        ),
        "the tier is up",
    )
    assert coopcache.cached(c, key, lambda: "here") == "here"
    watcher = spawn(cluster, c, key=list(key), value="unused", watch=True)
    assert watcher.stdout is not None
    first = json.loads(watcher.stdout.readline())
    assert first["results"] == [{"ok": "here"}] and first["computed"] == 0
    coopcache.invalidate(c, key)
    out, err = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, err
    assert json.loads(out.splitlines()[0]) == {"dropped": True}
