"""The Python part of `make demo`: 1,000 threads, then 1,000 asyncio tasks, ask for one cold key
at the same moment; the value is computed once each time. Each prints how many times the value
was computed, the wall time and the cache's stats (as the Rust and Node demos do).

Run: python examples/python/stampede.py"""

import asyncio
import sys
import threading
import time
from typing import Any, Dict, List

import coopcache

computed = 0


def report(what: str, cache: str, start: float, results: List[Any]) -> bool:
    wall_ms = (time.perf_counter() - start) * 1000
    same = all(r is results[0] for r in results)  # a hit returns the very object computed
    print(
        f"python: {what} on one cold key: computed {computed} time{'' if computed == 1 else 's'} "
        f"in {wall_ms:.0f} ms; every caller got the same value: {str(same).lower()}"
    )
    stats = coopcache.stats(cache)
    stats.pop("evictions")  # the same counts as evicted_idle / evicted_lru / evicted_invalidated
    print("  stats:", " ".join(f"{k}={v}" for k, v in stats.items()))
    return computed == 1 and same


def slow_lookup() -> Dict[str, str]:
    global computed
    computed += 1
    time.sleep(0.1)  # an expensive backend call
    return {"user": "Ada", "plan": "pro"}


def threads(n: int = 1000) -> bool:
    coopcache.configure("demo-threads")
    barrier = threading.Barrier(n)  # release all the threads at once
    results = []

    def worker() -> None:
        barrier.wait()
        results.append(coopcache.cached("demo-threads", ("user", 42), slow_lookup))

    pool = [threading.Thread(target=worker) for _ in range(n)]
    start = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return report(f"{n:,} threads", "demo-threads", start, results)


async def slow_fetch() -> Dict[str, str]:
    global computed
    computed += 1
    await asyncio.sleep(0.1)  # a slow backend; the event loop keeps running meanwhile
    return {"user": "Ada", "plan": "pro"}


async def tasks(n: int = 1000) -> bool:
    coopcache.configure("demo-tasks")
    start = time.perf_counter()
    results = await asyncio.gather(
        *(coopcache.cached_async("demo-tasks", ("user", 42), slow_fetch) for _ in range(n))
    )
    return report(f"{n:,} asyncio tasks", "demo-tasks", start, list(results))


def main() -> int:
    global computed
    ok = threads()
    computed = 0
    ok = asyncio.run(tasks()) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
