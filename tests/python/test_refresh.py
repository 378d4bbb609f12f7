"""Refresh ahead (``refresh_after``, ``serve_stale_on_error``) on a manual clock: time moves by
``advance``, never by sleeping; a refresh runs on a thread named ``coopcache-refresh`` (joined
here) or as a task of the caller's loop (awaited here)."""

import asyncio
import itertools
import logging
import threading
from typing import Any, List, Tuple

import coopcache
import pytest
from coopcache import _decorator, _native

_ids = itertools.count()


def manual(**settings: Any) -> Tuple[str, Any]:
    """A new cache on a manual clock, and the clock."""
    n = f"refresh-{next(_ids)}"
    clock = _native._manual_clock(n)
    coopcache.configure(n, **settings)
    return n, clock


def join_refreshes() -> None:
    for t in threading.enumerate():
        if t.name == "coopcache-refresh":
            t.join()


def counter() -> Tuple[List[int], Any]:
    calls: List[int] = []

    def load() -> int:
        calls.append(1)
        return len(calls)

    return calls, load


def test_a_due_hit_returns_the_old_value_and_one_refresh_replaces_it() -> None:
    n, clock = manual(refresh_after=60)
    calls, load = counter()
    assert coopcache.cached(n, "k", load) == 1
    clock.advance(30)
    assert coopcache.cached(n, "k", load) == 1
    join_refreshes()
    assert len(calls) == 1, "a hit that is not due refreshes nothing"
    assert coopcache.stats(n)["refreshes_started"] == 0
    clock.advance(31)
    assert coopcache.cached(n, "k", load) == 1, "the stored value, at once"
    join_refreshes()
    assert len(calls) == 2
    assert coopcache.cached(n, "k", load) == 2, "the refreshed value"
    s = coopcache.stats(n)
    assert (s["refreshes_started"], s["refreshes_succeeded"], s["refreshes_failed"]) == (1, 1, 0)
    assert s["stale_served"] == 1 and s["computations"] == 2


def test_hits_during_a_refresh_get_the_old_value_and_start_no_second_one() -> None:
    n, clock = manual(refresh_after=10)
    started, go = threading.Event(), threading.Event()
    calls: List[int] = []

    def load() -> int:
        calls.append(1)
        if len(calls) > 1:
            started.set()
            assert go.wait(20)
        return len(calls)

    assert coopcache.cached(n, "k", load) == 1
    clock.advance(11)
    assert coopcache.cached(n, "k", load) == 1
    assert started.wait(20)
    seen: List[int] = []

    def hit() -> None:
        seen.append(coopcache.cached(n, "k", load))

    hitters = [threading.Thread(target=hit) for _ in range(10)]
    for t in hitters:
        t.start()
    for t in hitters:
        t.join()
    assert seen == [1] * 10 and len(calls) == 2
    assert coopcache.stats(n)["refreshes_started"] == 1
    go.set()
    join_refreshes()
    assert coopcache.get(n, "k") == 2


def test_the_decorator_and_a_call_set_their_own_refresh_after() -> None:
    n, clock = manual()  # the cache never refreshes by itself
    calls: List[int] = []

    @coopcache.cached(n, key=lambda x: ("load", x), refresh_after=5)
    def load(x: int) -> Tuple[int, int]:
        calls.append(x)
        return (x, len(calls))

    assert load(7) == (7, 1)
    clock.advance(6)
    assert load(7) == (7, 1)
    join_refreshes()
    assert load(7) == (7, 2)
    other = coopcache.cached(n, "plain", lambda: 1)
    clock.advance(6)
    assert coopcache.cached(n, "plain", lambda: 2) == other
    join_refreshes()
    assert coopcache.get(n, "plain") == 1, "no refresh_after: never refreshed"


class Down(Exception):
    pass


def test_a_failed_refresh_keeps_the_old_value_counts_it_and_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    n, clock = manual(refresh_after=10)
    coopcache.cached(n, "k", lambda: 1)
    clock.advance(11)

    def down() -> int:
        raise Down("backend down")

    with caplog.at_level(logging.WARNING, logger="coopcache"):
        assert coopcache.cached(n, "k", down) == 1
        join_refreshes()
    assert coopcache.get(n, "k") == 1, "kept"
    s = coopcache.stats(n)
    assert (s["refreshes_started"], s["refreshes_failed"], s["refreshes_succeeded"]) == (1, 1, 0)
    assert any(
        "a refresh of" in r.getMessage() and "backend down" in r.getMessage() and "kept" in r.getMessage()
        for r in caplog.records
    ), caplog.records
    # Still due: the next hit tries again.
    assert coopcache.cached(n, "k", lambda: 2) == 1
    join_refreshes()
    assert coopcache.get(n, "k") == 2


def test_without_serve_stale_on_error_a_failed_refresh_removes_the_value() -> None:
    n, clock = manual(refresh_after=10, serve_stale_on_error=False)
    coopcache.cached(n, "k", lambda: 1)
    clock.advance(11)

    def down() -> int:
        raise Down("backend down")

    assert coopcache.cached(n, "k", down) == 1, "the hit itself still gets the stored value"
    join_refreshes()
    assert coopcache.get(n, "k") is None, "removed: the next call computes in the foreground"
    assert coopcache.cached(n, "k", lambda: 3) == 3


def test_an_async_refresh_runs_as_a_task_on_the_loop_that_started_it() -> None:
    n, clock = manual(refresh_after=10)
    loops: List[asyncio.AbstractEventLoop] = []

    async def load() -> int:
        loops.append(asyncio.get_running_loop())
        await asyncio.sleep(0)
        return len(loops)

    async def main() -> None:
        assert await coopcache.cached_async(n, "k", load) == 1
        clock.advance(11)
        assert await coopcache.cached_async(n, "k", load) == 1, "the stored value, at once"
        assert await coopcache.cached_async(n, "k", load) == 1, "one refresh at a time"
        await asyncio.gather(*list(_decorator._TASKS))
        assert await coopcache.cached_async(n, "k", load) == 2
        assert loops == [asyncio.get_running_loop()] * 2

    asyncio.run(main())
    assert coopcache.stats(n)["refreshes_started"] == 1


def test_refresh_options_are_checked_at_once() -> None:
    with pytest.raises(ValueError, match=r"invalid refresh_after: 0 \(int\); expected a number of seconds"):
        coopcache.configure("refresh-bad", refresh_after=0)
    with pytest.raises(TypeError, match=r"invalid refresh_after: \"60\" \(str\)"):
        coopcache.configure("refresh-bad", refresh_after="60")
    with pytest.raises(TypeError, match=r"invalid serve_stale_on_error: 1 \(int\); expected True or False"):
        coopcache.configure("refresh-bad", serve_stale_on_error=1)
    n, _ = manual()
    with pytest.raises(ValueError, match=r"invalid refresh_after: -1 \(int\)"):
        coopcache.cached(n, "k", lambda: 1, refresh_after=-1)
    with pytest.raises(ValueError, match=r"invalid refresh_after: 0 \(int\)"):
        coopcache.cached(n, key=lambda x: x, refresh_after=0)(lambda x: x)
    with pytest.raises(ValueError, match="exists already"):
        _native._manual_clock(n)


def test_early_refresh_makes_values_fall_due_before_refresh_after() -> None:
    # 100 values loaded together in 10 s: with beta 1, each falls due 10 s x E early (E
    # exponential), so 5 s before refresh_after about exp(-0.5) = 61% of them are due.
    n, clock = manual(refresh_after=100, early_refresh=1.0)

    def load(keys: List[int]) -> Any:
        clock.advance(10)
        return {k: k for k in keys}

    coopcache.cached_many(n, list(range(100)), load)
    clock.advance(95)
    for k in range(100):
        assert coopcache.cached(n, k, lambda: -1) in (k, -1)
    join_refreshes()
    due = coopcache.stats(n)["refreshes_started"]
    assert 30 <= due <= 90, f"{due} of 100 due 5 s early (about 61)"
    with pytest.raises(ValueError, match=r"invalid early_refresh: 0 \(int\); expected a number > 0"):
        coopcache.configure(n, early_refresh=0)
