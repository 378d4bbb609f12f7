"""coopcache: a cooperative cache. Each key's value is computed once, however many threads
and asyncio tasks ask for it at the same moment.

    import coopcache
    coopcache.configure("users", memory_limit=50 * 1024 * 1024, cache_duration=300)

    @coopcache.cached("users")
    def load_user(user_id: int) -> dict: ...

    value = coopcache.cached("users", ("user", 42), lambda: load_user_from_db(42))
    value = await coopcache.cached_async("users", ("user", 42), fetch_user)

Every rule lives in the Rust core; this package converts keys and values, runs your function,
and waits without holding the GIL or blocking the event loop.
"""

from __future__ import annotations

import atexit
import logging
import os
from importlib import metadata as _metadata

from . import _native
from ._decorator import _COMPUTING, cached, cached_async, cached_many, cached_many_async
from ._errors import RemoteError, UnknownCacheError
from ._native import (
    Cache,
    CacheRecursionError,
    NoCache,
    clear,
    configure,
    function_id,
    get,
    invalidate,
    invalidate_tag,
    key_bytes,
    names,
    nocache,
    stats,
)

__all__ = [
    "Cache",
    "CacheRecursionError",
    "NoCache",
    "RemoteError",
    "UnknownCacheError",
    "cache",
    "cached",
    "cached_async",
    "cached_many",
    "cached_many_async",
    "clear",
    "configure",
    "function_id",
    "get",
    "invalidate",
    "invalidate_tag",
    "key_bytes",
    "logger",
    "names",
    "nocache",
    "stats",
]

try:
    __version__ = _metadata.version("coopcache")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0"

#: The logger cache events go to: "full" and shared-tier trouble at WARNING, evictions at DEBUG.
logger = logging.getLogger("coopcache")

_native._init(logger, _COMPUTING)
atexit.register(_native._shutdown)
if hasattr(os, "register_at_fork"):  # POSIX
    # The child has only the forking thread: it forgets the other threads' computations (its
    # callers compute those keys instead of waiting forever) and restarts the sweeper.
    os.register_at_fork(after_in_child=_native._after_fork_in_child)


def cache(name: str) -> Cache:
    """The :class:`Cache` handle of a configured name (``UnknownCacheError`` if there is none)."""
    return _native.cache(name)
