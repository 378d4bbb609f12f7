"""A cold-key stampede: 1,000 threads, then 1,000 asyncio tasks, ask for one key at the same
moment; the value is computed once each time.  Run: python examples/python/stampede.py"""

import asyncio
import threading
import time

import coopcache

coopcache.configure("demo", memory_limit=50 * 1024 * 1024, cache_duration=300)
computed = 0


def plural(n: int) -> str:
    return "time" if n == 1 else "times"


def slow_square(x: int) -> int:
    global computed
    computed += 1
    time.sleep(0.2)  # an expensive backend call
    return x * x


def threads(n: int = 1000) -> None:
    barrier = threading.Barrier(n)
    results = []

    def worker() -> None:
        barrier.wait()
        results.append(coopcache.cached("demo", ("square", 12), lambda: slow_square(12)))

    pool = [threading.Thread(target=worker) for _ in range(n)]
    start = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall = time.perf_counter() - start
    assert results == [144] * n
    print(f"{n} threads: computed {computed} {plural(computed)} in {wall * 1000:.0f} ms")


async def slow_cube(x: int) -> int:
    global computed
    computed += 1
    await asyncio.sleep(0.2)
    return x * x * x


async def tasks(n: int = 1000) -> None:
    start = time.perf_counter()
    results = await asyncio.gather(
        *(coopcache.cached_async("demo", ("cube", 12), lambda: slow_cube(12)) for _ in range(n))
    )
    wall = time.perf_counter() - start
    assert results == [1728] * n
    print(f"{n} asyncio tasks: computed {computed} {plural(computed)} in {wall * 1000:.0f} ms")


def main() -> None:
    global computed
    print("Python: a stampede of callers on one cold key")
    threads()
    computed = 0
    asyncio.run(tasks())
    s = coopcache.stats("demo")
    print(
        "stats:", ", ".join(f"{k}={v}" for k, v in s.items() if k != "evictions"),
    )


if __name__ == "__main__":
    main()
