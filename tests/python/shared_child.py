"""A process of the shared-mode tests (tests/python/test_shared.py), driven by one JSON argument:

    {"url", "cache", "key", "threads": 1, "serializer": "json", "secret": None, "lease_ttl": None,
     "cache_duration": None, "sleep": 0.0, "raise": None | [type, message], "value": ...,
     "nocache": False, "started": None | Redis key to INCR before calling, "watch": False,
     "count": True}

Each thread calls coopcache.cached(cache, key, fn); fn INCRs coopcache-test:computed:<cache>
(unless "count" is false: on a cluster, this file's one-connection client cannot), sleeps,
then returns `value` or raises. Prints one JSON line: {"results": [...], "computed": n,
"stats": {...}} where a result is {"ok": value} or {"err": [class name, type_name, str]}. With
"watch", it then waits for the key to leave its local tier and prints {"dropped": true}.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import coopcache  # noqa: E402
from resp import command  # noqa: E402


def main() -> int:
    cfg = json.loads(sys.argv[1])
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    url, cache = cfg["url"], cfg["cache"]
    key = tuple(cfg["key"]) if isinstance(cfg["key"], list) else cfg["key"]
    opts: dict[str, Any] = {"redis_url": url, "serializer": cfg.get("serializer", "json")}
    for o in ("secret", "lease_ttl", "cache_duration"):
        if cfg.get(o) is not None:
            opts[o] = cfg[o]
    coopcache.configure(cache, **opts)
    computed = 0
    lock = threading.Lock()

    def compute() -> Any:
        nonlocal computed
        with lock:
            computed += 1
        try:
            if cfg.get("count", True):
                command(url, "INCR", f"coopcache-test:computed:{cache}")
        except OSError:
            pass  # Redis is down in the outage test; the local count still counts
        time.sleep(cfg.get("sleep", 0.0))
        if cfg.get("raise"):
            t, msg = cfg["raise"]
            raise {"ValueError": ValueError, "KeyError": KeyError}.get(t, RuntimeError)(msg)
        if cfg.get("nocache"):
            return coopcache.nocache(cfg.get("value"))
        return cfg.get("value")

    results: list[Any] = [None] * cfg.get("threads", 1)

    def run(i: int) -> None:
        try:
            results[i] = {"ok": coopcache.cached(cache, key, compute)}
        except Exception as e:  # noqa: BLE001 - reported to the test
            results[i] = {"err": [type(e).__name__, getattr(e, "type_name", None), str(e)]}

    if cfg.get("started"):
        command(url, "INCR", cfg["started"])
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out = {"results": results, "computed": computed, "stats": coopcache.stats(cache)}
    print(json.dumps(out, default=repr), flush=True)
    if cfg.get("watch"):
        end = time.monotonic() + 30
        while coopcache.get(cache, key) is not None:
            if time.monotonic() > end:
                return 1
            time.sleep(0.01)
        print(json.dumps({"dropped": True}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
