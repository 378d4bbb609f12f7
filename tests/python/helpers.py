"""Shared helpers: wait for a condition (never assert on elapsed time)."""

import asyncio
import time
from typing import Callable

import coopcache


def wait_until(cond: Callable[[], bool], what: str, bound: float = 20.0) -> None:
    """Polls `cond` until it holds; fails only if it never does within a generous bound."""
    end = time.monotonic() + bound
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.005)


def waiting(name: str, n: int) -> Callable[[], bool]:
    """True once `n` callers have joined a flight of cache `name` as waiters."""
    return lambda: coopcache.stats(name)["coalesced"] >= n


async def until(cond: Callable[[], bool]) -> None:
    """Awaits a condition without blocking the loop (a generous bound, never a timing assertion)."""
    for _ in range(20_000):
        if cond():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition never held")
