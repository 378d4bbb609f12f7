"""coopcache as a contender of the anchor harness (../shared/bench/python/anchors.py):

    python anchors.py --contender coopcache=path/to/coopcache_contender.py:CONTENDER
    python anchors.py --contender coopcache-keyfn=path/to/coopcache_contender.py:KEYED

CONTENDER goes through the decorator as a user would write it (``@coopcache.cached(name)``:
the key is the function's qualified name plus its arguments). The harness defines its functions
inside its scenarios, and the default key refuses such a function (every call of a scenario
would make one of that name); so each is renamed first as if defined at this module's top level
(``coopcache_contender.fn_N``), the name a user's module-level function has. KEYED passes
``key=`` so the key is the bare argument (smaller keys, one Python call more per hit).
Each wrap() configures a fresh named cache large enough for the memory scenario.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable

import coopcache

_ids = itertools.count()


def _fresh() -> str:
    name = f"bench-{next(_ids)}"
    coopcache.configure(name, memory_limit=16 * 1024**3, cache_duration=3600)
    return name


class _Contender:
    package = "coopcache"

    def __init__(self, name: str, key: Any = None) -> None:
        self.name = name
        self._key = key

    def wrap(self, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        if self._key is None:
            return coopcache.cached(_fresh())(_top_level(fn))
        return coopcache.cached(_fresh(), key=self._key)(fn)

    def wrap_async(self, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        return self.wrap(fn)


def _top_level(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``fn`` named as a function defined at this module's top level (see the module docs)."""
    fn.__module__ = __name__
    fn.__qualname__ = fn.__name__ = f"fn_{next(_ids)}"
    return fn


CONTENDER = _Contender("coopcache")
KEYED = _Contender("coopcache-keyfn", key=lambda k: k)
