"""Shared mode: 4 processes x 8 threads ask for one cold key; with Redis the value is computed
once for all of them. Needs a Redis server.

Run: python examples/python/shared.py [REDIS_URL]   (default: $REDIS_URL, else redis://127.0.0.1:6379)"""

import multiprocessing as mp
import os
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


def main() -> int:
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
    cache = f"demo-{uuid.uuid4().hex[:8]}"  # a fresh key space for each run (expires after 60 s)
    ctx = mp.get_context("spawn")
    out: "mp.Queue[tuple[int, list[str]]]" = ctx.Queue()
    procs = [ctx.Process(target=process, args=(url, cache, out)) for _ in range(4)]
    for p in procs:
        p.start()
    reports = [out.get() for _ in procs]
    for p in procs:
        p.join()
    values = [v for _, r in reports for v in r]
    computed = sum(c for c, _ in reports)
    same = all(v == values[0] for v in values)
    print(
        f"python shared mode: {len(procs)} processes x 8 threads, computed {computed} "
        f"time{'' if computed == 1 else 's'}, every caller got the same value: {str(same).lower()} "
        f"({values[0]!r})"
    )
    return 0 if computed == 1 and same else 1


if __name__ == "__main__":
    sys.exit(main())
