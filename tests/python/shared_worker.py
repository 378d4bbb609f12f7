"""A Python process of the cross-language shared-mode test.

Usage: python tests/python/shared_worker.py REDIS_URL CACHE

Configures CACHE in shared mode (serializer="json", cache_duration=60) and asks for the key
("user", 42); the function counts itself with INCR coopcache-test:computed:<CACHE> on the same
Redis, sleeps 0.3 s and returns {"value": "from python"}. Prints json.dumps(result) on one line.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import coopcache  # noqa: E402
from resp import command  # noqa: E402


def main() -> int:
    url, cache = sys.argv[1], sys.argv[2]
    coopcache.configure(cache, redis_url=url, serializer="json", cache_duration=60)

    def compute() -> Any:
        command(url, "INCR", f"coopcache-test:computed:{cache}")
        time.sleep(0.3)
        return {"value": "from python"}

    result = coopcache.cached(cache, ("user", 42), compute)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
