"""Type-checked with `mypy --strict` against the package's stubs (tests/python/run.sh).
Also runs as a plain script."""

from __future__ import annotations

import asyncio
from typing import Dict, List

import coopcache

cache: coopcache.Cache = coopcache.configure(
    "typing", memory_limit=1024 * 1024, cache_duration=10.0, when_full="evict", max_concurrency=4
)


def load(user_id: int) -> Dict[str, int]:
    return {"id": user_id}


value: Dict[str, int] = coopcache.cached("typing", ("user", 1), lambda: load(1))
value2: Dict[str, int] = coopcache.cached("typing", ("user", 2), lambda: load(2), timeout=2.0, tags=["u"])
fresh: str = coopcache.cached("typing", "nc", lambda: coopcache.nocache("x"))
same: Dict[str, int] = cache.cached(("user", 1), lambda: load(1))


@coopcache.cached("typing")
def double(x: int) -> int:
    return 2 * x


@coopcache.cached("typing", key=lambda x: ("sq", x), weigher=lambda v: 8)
def square(x: int) -> int:
    return x * x


@coopcache.cached("typing")
async def fetch(x: int) -> List[int]:
    await asyncio.sleep(0)
    return [x]


async def main() -> None:
    n: int = double(2) + square(3)
    xs: List[int] = await fetch(n)
    got: List[int] = await coopcache.cached_async("typing", "k", lambda: fetch(1))
    print(xs, got)


asyncio.run(main())
hit: object = coopcache.get("typing", ("user", 1))
removed: bool = coopcache.invalidate("typing", ("user", 1))
count: int = coopcache.invalidate_tag("typing", "u")
coopcache.clear("typing")
stats: Dict[str, object] = coopcache.stats("typing")
kb: bytes = coopcache.key_bytes(("user", 1))
fid: bytes = coopcache.function_id("app.users.profile")
names: List[str] = coopcache.names()
try:
    coopcache.cached("nope", 1, lambda: 1)
except coopcache.UnknownCacheError as e:
    err: KeyError = e


@cache.cached()
def via_handle(x: int) -> str:
    return str(x)


async def handle_async() -> None:
    s: str = via_handle(1)
    t: List[int] = await cache.cached_async("ha", lambda: fetch(2))
    print(s, t)


asyncio.run(handle_async())


def shared_config(url: str) -> coopcache.Cache:
    """Shared mode (not called here: it needs a Redis server)."""
    return coopcache.configure(
        "typing-shared", redis_url=url, serializer="json", secret=b"k", lease_ttl=5.0, cache_duration=60
    )


remote_error = coopcache.RemoteError("ValueError", "bad")
remote_type: str = remote_error.type_name
remote_message: str = remote_error.message
assert str(remote_error) == "ValueError: bad"

refreshing = coopcache.configure("typing-refresh", refresh_after=60, serve_stale_on_error=False)
rate: float = coopcache.cached("typing-refresh", "EUR", lambda: 1.08, refresh_after=30)


@coopcache.cached("typing-refresh", refresh_after=5.0)
def refreshed(x: int) -> int:
    return x


many: List[str] = coopcache.cached_many("typing-refresh", [1, 2], lambda ids: {i: str(i) for i in ids})


@coopcache.cached_many("typing-refresh")
def load_names(ids: List[int]) -> Dict[int, str]:
    return {i: f"name {i}" for i in ids}


names_list: List[str] = load_names([1, 2])


@coopcache.cached_many("typing-refresh")
async def load_names_async(ids: List[int]) -> Dict[int, str]:
    return {i: f"name {i}" for i in ids}


async def many_async() -> List[str]:
    got: List[str] = await coopcache.cached_many_async(
        "typing-refresh", [3], lambda ids: {i: "x" for i in ids}
    )
    return got + await load_names_async([4])


print(asyncio.run(many_async()))
print(refreshed(1), many, names_list)
