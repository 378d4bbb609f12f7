"""Shared mode: 4 processes x 8 threads ask for one cold key; with Redis the value is computed
once for all of them. Needs a Redis server.

Run: python examples/python/shared.py [redis://127.0.0.1:6379]"""

import multiprocessing as mp
import sys
import threading
import time
import uuid

import coopcache


def process(url: str, cache: str, out: "mp.Queue[tuple[int, list[str]]]") -> None:
    coopcache.configure(cache, redis_url=url, serializer="json", cache_duration=60)
    computed = 0
    results: list[str] = []

    def load() -> str:
        nonlocal computed
        computed += 1
        time.sleep(0.5)  # an expensive backend call
        return "report #42"

    def worker() -> None:
        results.append(coopcache.cached(cache, ("report", 42), load))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put((computed, results))


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379"
    cache = f"demo-{uuid.uuid4().hex[:8]}"  # a fresh key space for each run (expires after 60 s)
    ctx = mp.get_context("spawn")
    out: "mp.Queue[tuple[int, list[str]]]" = ctx.Queue()
    procs = [ctx.Process(target=process, args=(url, cache, out)) for _ in range(4)]
    for p in procs:
        p.start()
    reports = [out.get() for _ in procs]
    for p in procs:
        p.join()
    calls = sum(len(r) for _, r in reports)
    computed = sum(c for c, _ in reports)
    print(f"{calls} calls in {len(procs)} processes; computed {computed} time(s): {reports[0][1][0]!r}")


if __name__ == "__main__":
    main()
