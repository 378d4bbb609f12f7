"""A process of the cross-process refresh test (tests/python/test_shared.py), driven one JSON
line at a time on stdin, answering one JSON line each on stdout:

    {"op": "call", "value": v}      coopcache.cached(cache, key, fn); fn INCRs
                                    coopcache-test:computed:<cache> and returns v
    {"op": "advance", "seconds": s} moves this process's manual clock
    {"op": "until", "value": v}     waits (30 s at most) until the local tier holds v
    {"op": "call_until", "value": v, "compute": c}
                                    calls as "call" does (fn returns c) until a call
                                    returns v (30 s at most): each hit may start a refresh
    {"op": "stats"}                 coopcache.stats(cache)

The first argument is {"url", "cache", "key", "refresh_after"}; the cache runs on a manual
clock, so "due" is decided by the test, not by time passing.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import coopcache  # noqa: E402
from coopcache import _native  # noqa: E402
from resp import command  # noqa: E402


def main() -> int:
    cfg = json.loads(sys.argv[1])
    url, cache, key = cfg["url"], cfg["cache"], cfg["key"]
    clock = _native._manual_clock(cache)
    coopcache.configure(cache, redis_url=url, serializer="json", refresh_after=cfg["refresh_after"])

    def call(value: Any) -> Any:
        def compute() -> Any:
            command(url, "INCR", f"coopcache-test:computed:{cache}")
            return value

        return coopcache.cached(cache, key, compute)

    def until(value: Any, read: Any = lambda: coopcache.get(cache, key)) -> bool:
        end = time.monotonic() + 30
        while read() != value:
            if time.monotonic() > end:
                return False
            time.sleep(0.01)
        return True

    for line in sys.stdin:
        m = json.loads(line)
        op = m["op"]
        if op == "call":
            out: Any = call(m["value"])
        elif op == "advance":
            out = clock.advance(m["seconds"])
        elif op == "until":
            out = until(m["value"])
        elif op == "call_until":
            out = until(m["value"], functools.partial(call, m["compute"]))
        else:
            out = coopcache.stats(cache)
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
