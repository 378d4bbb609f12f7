import os
import signal
import subprocess
import sys
import textwrap
import threading
from typing import Any, List

import coopcache
import pytest
from conftest import fresh
from helpers import wait_until, waiting

THREADS = 32


def stampede(name: str, fn: Any, n: int = THREADS) -> List[Any]:
    """n threads released together call cached(name, "cold", fn); returns what each got."""
    barrier = threading.Barrier(n)
    results: List[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = coopcache.cached(name, "cold", fn)
        except BaseException as e:  # noqa: B036 - the test inspects what each thread got
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_threads_on_a_cold_key_compute_once(name: str) -> None:
    calls = []
    release = threading.Event()

    def compute() -> dict:
        calls.append(1)
        wait_until(waiting(name, THREADS - 1), "every other thread waits")
        release.wait()
        return {"v": 1}

    def releaser() -> None:
        wait_until(waiting(name, THREADS - 1), "every other thread waits")
        release.set()

    threading.Thread(target=releaser).start()
    results = stampede(name, compute)
    assert calls == [1]
    assert all(r is results[0] for r in results)
    s = coopcache.stats(name)
    assert s["computations"] == 1 and s["coalesced"] == THREADS - 1 and s["in_flight"] == 0


def test_error_reaches_every_waiter_with_its_type_and_is_not_stored(name: str) -> None:
    calls = []

    class MyError(Exception):
        pass

    def compute() -> object:
        calls.append(1)
        wait_until(waiting(name, THREADS - 1), "every other thread waits")
        raise MyError("db down")

    results = stampede(name, compute)
    assert calls == [1]
    assert all(isinstance(r, MyError) for r in results)
    assert all(r is results[0] for r in results)  # the very same exception object
    assert coopcache.stats(name)["errors"] == 1
    assert coopcache.cached(name, "cold", lambda: "ok") == "ok"


def test_waiters_tracebacks_do_not_pile_up(name: str) -> None:
    import traceback

    def compute() -> object:
        wait_until(waiting(name, THREADS - 1), "every other thread waits")
        raise ValueError("x")

    results = stampede(name, compute)
    assert all(isinstance(r, ValueError) for r in results)
    assert len(traceback.extract_tb(results[0].__traceback__)) < 12


def test_nocache_reaches_every_waiter(name: str) -> None:
    def compute() -> object:
        wait_until(waiting(name, THREADS - 1), "every other thread waits")
        return coopcache.nocache("fresh")

    assert stampede(name, compute) == ["fresh"] * THREADS
    assert coopcache.stats(name)["entries"] == 0


def test_recursion_is_an_error_not_a_deadlock(name: str) -> None:
    def inner() -> object:
        return coopcache.cached(name, "k", inner)

    with pytest.raises(RecursionError, match="asked for that same key") as e:
        coopcache.cached(name, "k", inner)
    assert isinstance(e.value, coopcache.CacheRecursionError)

    def via_other() -> object:
        return coopcache.cached(name, "other", lambda: coopcache.cached(name, "k2", via_other))

    with pytest.raises(RecursionError):
        coopcache.cached(name, "k2", via_other)


def test_timeout_is_for_that_caller_only(name: str) -> None:
    release = threading.Event()
    got: List[Any] = []

    def slow() -> str:
        release.wait()
        return "v"

    leader = threading.Thread(target=lambda: got.append(coopcache.cached(name, "k", slow)))
    leader.start()
    wait_until(lambda: coopcache.stats(name)["in_flight"] == 1, "the leader computes")
    with pytest.raises(TimeoutError):
        coopcache.cached(name, "k", slow, timeout=0.05)
    other = threading.Thread(target=lambda: got.append(coopcache.cached(name, "k", slow)))
    other.start()
    wait_until(waiting(name, 2), "a second waiter joins")
    release.set()
    leader.join()
    other.join()
    assert got == ["v", "v"]
    assert coopcache.get(name, "k") == "v"


def test_leader_interrupted_interrupts_every_waiter(name: str) -> None:
    """A BaseException that is not an Exception, raised by the leader's function, is its
    outcome like any other: every waiter gets it, nothing is stored, nobody computes again
    (more kinds and callers in test_base_exceptions.py)."""
    calls = []

    def compute() -> str:
        calls.append(1)
        if len(calls) == 1:
            wait_until(waiting(name, 1), "the other thread waits")
            raise KeyboardInterrupt
        return "second"

    results = stampede(name, compute, n=2)
    assert [type(r) for r in results] == [KeyboardInterrupt] * 2 and results[0] is results[1]
    assert len(calls) == 1 and coopcache.get(name, "cold") is None


def test_max_concurrency_limits_distinct_keys() -> None:
    n = fresh(max_concurrency=2)
    running, peak = [0], [0]
    lock = threading.Lock()

    def compute(i: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            return i
        finally:
            with lock:
                running[0] -= 1

    barrier = threading.Barrier(8)

    def run(i: int) -> None:
        barrier.wait()
        for j in range(20):
            coopcache.cached(n, (i, j), lambda: compute(i))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 1 <= peak[0] <= 2
    assert coopcache.stats(n)["computations"] == 160


def test_waiting_thread_does_not_hold_the_gil(name: str) -> None:
    """While one thread computes and another waits, a third keeps running Python code."""
    release = threading.Event()
    counted = [0]

    def slow() -> str:
        release.wait()
        return "v"

    leader = threading.Thread(target=lambda: coopcache.cached(name, "k", slow))
    leader.start()
    wait_until(lambda: coopcache.stats(name)["in_flight"] == 1, "the leader computes")
    waiter = threading.Thread(target=lambda: coopcache.cached(name, "k", slow))
    waiter.start()
    wait_until(waiting(name, 1), "the waiter waits")

    def count() -> None:
        for _ in range(200_000):
            counted[0] += 1

    c = threading.Thread(target=count)
    c.start()
    c.join()
    assert counted[0] == 200_000
    release.set()
    leader.join()
    waiter.join()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_reaches_a_waiting_thread() -> None:
    script = textwrap.dedent(
        """
        import faulthandler, signal, threading, sys, coopcache
        # Stuck after 30 s: every thread's traceback to stderr (the test shows it), and exit.
        faulthandler.dump_traceback_later(30, exit=True)
        # Started from a background job (`make test &` in a script), a process inherits SIGINT
        # ignored, and Python then installs no handler of its own: Ctrl-C as a terminal has it.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        coopcache.configure("c")
        release = threading.Event()
        def slow():
            release.wait()
            return 1
        t = threading.Thread(target=lambda: coopcache.cached("c", "k", slow), daemon=True)
        t.start()
        while coopcache.stats("c")["in_flight"] != 1:
            pass
        def announce():
            while coopcache.stats("c")["coalesced"] != 1:
                pass
            print("waiting", flush=True)
        threading.Thread(target=announce, daemon=True).start()
        try:
            coopcache.cached("c", "k", slow)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            release.set()
            t.join()
            print("leader done", coopcache.get("c", "k"), flush=True)
            sys.exit(0)
        sys.exit(3)
        """
    )
    p = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "waiting"
    os.kill(p.pid, signal.SIGINT)
    try:
        out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError(f"the child never ended: stdout {out!r}, stderr {err!r}") from None
    assert p.returncode == 0 and "interrupted" in out and "leader done 1" in out, (out, err)
