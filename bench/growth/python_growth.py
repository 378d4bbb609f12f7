"""Do the Python package's costs stay flat as a cache grows? For 10^4 to 10^7 entries of a
decorated function of one int: the hit latency on uniformly random keys and the resident memory
per entry, beside functools.lru_cache(maxsize=None) (the anchor). Each row runs in a process of
its own, so memory one row freed does not hide another's. Prints a Markdown table; with
`--json FILE`, writes the figures for bench/chart.py.

    python bench/growth/python_growth.py [--json FILE] [--max N]
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import subprocess
import sys
import time
from typing import Any, Callable

LOOKUPS = 1_000_000
SIZES = [10_000, 100_000, 1_000_000, 10_000_000]


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def square(x: int) -> int:
    return x * x


def row(name: str, n: int) -> dict[str, float]:
    rnd = random.Random(7)
    keys = [rnd.randrange(n) for _ in range(LOOKUPS)]
    import coopcache  # before the first reading: the module is not the entries' memory

    before = rss()
    f: Callable[[int], int]
    if name == "lru_cache":
        f = functools.lru_cache(maxsize=None)(square)
    else:
        coopcache.configure("growth", memory_limit=0.5)
        f = coopcache.cached("growth")(square)
    for k in range(n):
        f(k)
    per_entry = (rss() - before) / n
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter_ns()
        for k in keys:
            f(k)
        best = min(best, (time.perf_counter_ns() - t) / len(keys))
    return {"hit_ns": best, "bytes_per_entry": per_entry}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--max", type=int, default=SIZES[-1])
    ap.add_argument("--row", nargs=2)
    a = ap.parse_args()
    if a.row:
        print(json.dumps(row(a.row[0], int(a.row[1]))))
        return
    out: list[dict[str, Any]] = []
    print("| entries | coopcache hit (ns) | lru_cache hit (ns) | coopcache B/entry | lru_cache B/entry |")
    print("|---:|---:|---:|---:|---:|")
    for n in [s for s in SIZES if s <= a.max]:
        r: dict[str, Any] = {"entries": n}
        for name in ("coopcache", "lru_cache"):
            res = subprocess.run(
                [sys.executable, __file__, "--row", name, str(n)], check=True, capture_output=True, text=True
            )
            for k, v in json.loads(res.stdout).items():
                r[f"{name}_{k}"] = v
        print(
            f"| {n} | {r['coopcache_hit_ns']:.1f} | {r['lru_cache_hit_ns']:.1f} | "
            f"{r['coopcache_bytes_per_entry']:.1f} | {r['lru_cache_bytes_per_entry']:.1f} |",
            flush=True,
        )
        out.append(r)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
