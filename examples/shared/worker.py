"""The Python process of the cross-process demo (examples/shared/demo.py starts it).

Usage: python examples/shared/worker.py REDIS_URL CACHE

Configures CACHE with a shared tier on REDIS_URL (serializer="json", so Node and Rust processes
share the key space), prints "ready", waits for a line on stdin, then asks for the key
("report", 2024). Computing it takes 500 ms. Prints one JSON line: who it is, whether it
computed the value, and the value it got."""

import json
import os
import sys
import time

import coopcache

url, cache = sys.argv[1], sys.argv[2]
coopcache.configure(cache, redis_url=url, serializer="json", cache_duration=60)  # waits to connect
print("ready", flush=True)
sys.stdin.readline()  # every process starts at the same moment

me = f"python pid {os.getpid()}"
computed = False


def build_report() -> dict:
    global computed
    computed = True
    time.sleep(0.5)  # an expensive computation
    return {"report": 2024, "computed_by": me}


value = coopcache.cached(cache, ("report", 2024), build_report)
print(json.dumps({"who": me, "computed": computed, "value": value}), flush=True)
