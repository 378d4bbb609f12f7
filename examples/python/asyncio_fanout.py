"""asyncio fan-out: 1,000 tasks ask for exchange rates of 5 currencies at once; each rate is
fetched once, and every task waiting for it gets that one result without blocking the event loop.

Run: python examples/python/asyncio_fanout.py"""

import asyncio
import collections
import random
import sys
import time

import coopcache

coopcache.configure("rates", cache_duration=60)  # a rate is fetched again after 60 s unused
CURRENCIES = ["EUR", "GBP", "JPY", "CHF", "SEK"]
fetches: "collections.Counter[str]" = collections.Counter()  # backend calls per currency


@coopcache.cached("rates")  # the key: this function's name and its argument
async def usd_rate(currency: str) -> float:
    """A slow remote API call."""
    fetches[currency] += 1
    await asyncio.sleep(0.2)
    return {"EUR": 0.92, "GBP": 0.79, "JPY": 151.3, "CHF": 0.88, "SEK": 10.4}[currency]


async def price_in(currency: str, usd: float) -> float:
    """What each task does: convert a price, which needs the rate."""
    return round(usd * await usd_rate(currency), 2)


async def main() -> int:
    rng = random.Random(1)
    orders = [(rng.choice(CURRENCIES), rng.randint(1, 100)) for _ in range(1000)]
    start = time.perf_counter()
    prices = await asyncio.gather(*(price_in(currency, usd) for currency, usd in orders))
    wall_ms = (time.perf_counter() - start) * 1000

    total = sum(fetches.values())
    print(
        f"asyncio fan-out: {len(prices):,} tasks on {len(CURRENCIES)} keys in {wall_ms:.0f} ms: "
        f"computed {total} times, once per key: {str(total == len(CURRENCIES)).lower()}"
    )
    print("  fetches per currency:", " ".join(f"{c}={fetches[c]}" for c in CURRENCIES))
    stats = coopcache.stats("rates")
    print(
        f"  stats: misses={stats['misses']} coalesced={stats['coalesced']} hits={stats['hits']} "
        f"computations={stats['computations']} entries={stats['entries']}"
    )
    return 0 if all(n == 1 for n in fetches.values()) and total == len(CURRENCIES) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
