"""`os.fork()` while a computation is in flight (issue 14, item 4): the child has only the
forking thread, so it must not wait for the parent's other threads (they do not exist there),
and its sweeper must run. The child reports through its exit status; the parent bounds the wait
so a hang is a failure, not a stuck suite."""

import os
import threading
import time
import warnings
from typing import Callable

import coopcache
import pytest
from conftest import fresh

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")


def in_child(body: Callable[[], bool], bound: float = 30.0) -> None:
    """Runs `body` in a forked child; passes if it returns True there within `bound` seconds."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "multi-threaded, fork() may deadlock"
        pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if body() else 2
        finally:
            os._exit(code)
    end = time.monotonic() + bound
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child status {status}"
            return
        if time.monotonic() > end:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise AssertionError(f"the child did not finish within {bound} s (it hangs)")
        time.sleep(0.01)


def test_the_child_computes_a_key_the_parent_was_computing() -> None:
    n = fresh()
    started, release = threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        release.wait()
        return "parent"

    leader = threading.Thread(target=lambda: coopcache.cached(n, "k", slow))
    leader.start()
    started.wait()
    try:
        in_child(lambda: coopcache.cached(n, "k", lambda: "child", timeout=10) == "child")
    finally:
        release.set()
        leader.join()
    assert coopcache.get(n, "k") == "parent"


def test_the_childs_sweeper_reclaims_idle_entries() -> None:
    n = fresh(cache_duration=0.1)
    coopcache.cached(n, "warm", lambda: 1)  # the parent's sweeper runs

    def child() -> bool:
        before = coopcache.stats(n)["evicted_idle"]
        coopcache.cached(n, "k", lambda: "idle")
        end = time.monotonic() + 20
        while time.monotonic() < end:
            s = coopcache.stats(n)
            if s["entries"] == 0 and s["evicted_idle"] > before:
                return True
            time.sleep(0.02)
        return False

    in_child(child)
