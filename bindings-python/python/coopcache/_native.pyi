"""Type stubs of the native module (the Rust core, through pyo3)."""

from typing import (
    Any,
    Awaitable,
    Callable,
    Dict,
    Generic,
    Iterable,
    List,
    Literal,
    Optional,
    Tuple,
    TypeVar,
    Union,
    final,
    overload,
)

_T = TypeVar("_T")
_F = TypeVar("_F", bound=Callable[..., Any])

#: A key: str, bytes, int, float, bool, None, or tuples/lists of these, nested.
Key = Any

ENTRY_OVERHEAD: int

class CacheRecursionError(RecursionError):
    """A computation asked for its own key of its own cache."""

@final
class NoCache(Generic[_T]):
    """A value returned to every caller but not stored (see :func:`nocache`)."""
    @property
    def value(self) -> _T:
        """The value handed to every caller."""
        ...

def nocache(value: _T) -> NoCache[_T]:
    """Marks a computed value as "return it, but do not store it"."""
    ...

@final
class Cache:
    """A handle on one named cache, returned by :func:`configure`."""
    @property
    def name(self) -> str:
        """The cache's name."""
        ...
    def get(self, key: Key, default: Optional[_T] = None) -> Any:
        """The stored value, or ``default`` on a miss (no computation)."""
        ...
    def invalidate(self, key: Key) -> bool:
        """Removes the key's entry; True if one was removed."""
        ...
    def invalidate_tag(self, tag: str) -> int:
        """Removes every entry stored with ``tag``; returns how many."""
        ...
    def clear(self) -> None:
        """Removes every entry."""
        ...
    def stats(self) -> Dict[str, Any]:
        """The counters as a dict (see :func:`stats`)."""
        ...
    @overload
    def cached(
        self,
        key: Key,
        func: Callable[[], NoCache[_T]],
        *,
        timeout: Optional[float] = None,
        tags: Optional[Iterable[str]] = None,
        weigher: Optional[Callable[[Any], int]] = None,
        refresh_after: Optional[float] = None,
    ) -> _T: ...
    @overload
    def cached(
        self,
        key: Key,
        func: Callable[[], _T],
        *,
        timeout: Optional[float] = None,
        tags: Optional[Iterable[str]] = None,
        weigher: Optional[Callable[[Any], int]] = None,
        refresh_after: Optional[float] = None,
    ) -> _T: ...
    @overload
    def cached(
        self,
        key: Optional[Callable[..., Any]] = None,
        func: None = None,
        *,
        timeout: Optional[float] = None,
        tags: Optional[Iterable[str]] = None,
        weigher: Optional[Callable[[Any], int]] = None,
        refresh_after: Optional[float] = None,
    ) -> Callable[[_F], _F]:
        """Call form ``c.cached(key, fn)``: the value for ``key``, computed by ``fn()`` once
        however many callers ask. Without ``fn``, the decorator form (``@c.cached()``,
        ``@c.cached(key=...)``)."""
        ...
    @overload
    async def cached_async(
        self,
        key: Key,
        func: Callable[[], Awaitable[NoCache[_T]]],
        *,
        timeout: Optional[float] = None,
        tags: Optional[Iterable[str]] = None,
        weigher: Optional[Callable[[Any], int]] = None,
        refresh_after: Optional[float] = None,
    ) -> _T: ...
    @overload
    async def cached_async(
        self,
        key: Key,
        func: Callable[[], Awaitable[_T]],
        *,
        timeout: Optional[float] = None,
        tags: Optional[Iterable[str]] = None,
        weigher: Optional[Callable[[Any], int]] = None,
        refresh_after: Optional[float] = None,
    ) -> _T: ...
    @overload
    async def cached_async(
        self,
        key: Key,
        func: Callable[[], NoCache[_T]],
        *,
        timeout: Optional[float] = None,
        tags: Optional[Iterable[str]] = None,
        weigher: Optional[Callable[[Any], int]] = None,
        refresh_after: Optional[float] = None,
    ) -> _T: ...
    @overload
    async def cached_async(
        self,
        key: Key,
        func: Callable[[], _T],
        *,
        timeout: Optional[float] = None,
        tags: Optional[Iterable[str]] = None,
        weigher: Optional[Callable[[Any], int]] = None,
        refresh_after: Optional[float] = None,
    ) -> _T:
        """``await c.cached_async(key, fn)``: the asyncio form (see ``coopcache.cached_async``)."""
        ...

def configure(
    name: str,
    memory_limit: Optional[Union[int, float]] = None,
    cache_duration: Optional[float] = None,
    when_full: Optional[str] = None,
    max_concurrency: Optional[int] = None,
    refresh_after: Optional[float] = None,
    serve_stale_on_error: Optional[bool] = None,
    early_refresh: Optional[float] = None,
    redis_url: Optional[str] = None,
    serializer: Optional[Literal["pickle", "json"]] = None,
    secret: Optional[Union[str, bytes]] = None,
    lease_ttl: Optional[float] = None,
) -> Cache:
    """Creates the cache ``name``, or updates its settings in place (entries are kept), and
    returns its :class:`Cache` handle. On a new cache omitted settings take their defaults:
    ``memory_limit=50 * 1024 * 1024`` (bytes; a float in (0, 1] is a fraction of the machine's
    memory), ``cache_duration=300`` (idle seconds), ``when_full="reject"`` (or ``"evict"``),
    ``max_concurrency=None`` (no limit), ``refresh_after=None`` (seconds after an entry was
    computed until a hit starts one background recomputation; None: never),
    ``serve_stale_on_error=True`` (a failed refresh keeps the old value), ``early_refresh=None``
    (XFetch's beta: values computed here fall due a little early); shared mode: ``redis_url=None``,
    ``serializer="pickle"`` (or ``"json"``), ``secret=None``, ``lease_ttl=10.0``. On an existing
    cache they keep their current values. Bad settings raise ``ValueError`` / ``TypeError`` at once."""
    ...

def cache(name: str) -> Cache:
    """The :class:`Cache` handle of a configured name (``UnknownCacheError`` if there is none)."""
    ...

@overload
def cached(
    name: str,
    key: Key,
    func: Callable[[], NoCache[_T]],
    *,
    timeout: Optional[float] = None,
    tags: Optional[Iterable[str]] = None,
    weigher: Optional[Callable[[Any], int]] = None,
    refresh_after: Optional[float] = None,
) -> _T: ...
@overload
def cached(
    name: str,
    key: Key,
    func: Callable[[], _T],
    *,
    timeout: Optional[float] = None,
    tags: Optional[Iterable[str]] = None,
    weigher: Optional[Callable[[Any], int]] = None,
    refresh_after: Optional[float] = None,
) -> _T:
    """Call form: the value for ``key`` in cache ``name``, computed by ``func()`` once however
    many callers ask at the same moment (the others wait for it, without the GIL)."""
    ...

def get(name: str, key: Key, default: Optional[_T] = None) -> Any:
    """The stored value for ``key`` in cache ``name``, or ``default`` on a miss (never computes;
    a read resets the entry's idle clock)."""
    ...

def invalidate(name: str, key: Key) -> bool:
    """Removes the entry for ``key`` (in shared mode also from Redis and every process); True if
    one was removed here."""
    ...

def invalidate_tag(name: str, tag: str) -> int:
    """Removes the entries stored with ``tag`` (in shared mode, everywhere); returns how many
    were removed here."""
    ...

def clear(name: str) -> None:
    """Removes every entry of cache ``name`` (in shared mode, everywhere)."""
    ...

def stats(name: str) -> Dict[str, Any]:
    """The counters of cache ``name`` as a dict: hits, misses, computations, coalesced, errors,
    nocache, rejected_full, evicted_idle, evicted_lru, evicted_invalidated (also as
    ``evictions``), entries, bytes_used, memory_limit, in_flight; in shared mode also
    remote_hits, leases_won, leases_lost, remote_waits, fallbacks, rejected_values, message_bytes;
    refreshes_started, refreshes_succeeded, refreshes_failed and stale_served count refreshes."""
    ...

def names() -> list[str]:
    """The configured cache names, sorted."""
    ...

def claim_name(cache: str, name: str, owner: int) -> bool:
    """Claims a default-key name in a cache for the function ``owner`` (its ``id``): True if new."""
    ...

def release_name(cache: str, name: str, owner: int) -> None:
    """Frees a name ``claim_name`` gave ``owner``."""
    ...

def key_bytes(key: Key) -> bytes:
    """The canonical key bytes of a key (equal keys, equal bytes, in every language)."""
    ...

def function_id(name: str) -> bytes:
    """The 8 bytes that stand for the function of qualified name ``name`` in its default keys."""
    ...

def estimate_size(value: object) -> int:
    """The native deep-size estimate of a value, in bytes."""
    ...

def _init(logger: Any, computing: Any) -> None: ...
def _shutdown() -> None: ...
def _after_fork_in_child() -> None: ...
def _manual_clock(name: str) -> ManualClock:
    """For tests only: the cache ``name``, configured after this, reads a manual clock."""
    ...

@final
class ManualClock:
    def advance(self, seconds: float) -> None: ...

@final
class Frame: ...

_Action = Tuple[int, int, Any, bool]

@final
class Jobs:
    """One event loop's (or one blocking batch's) misses on the core's table of jobs."""
    def __init__(self, loop_id: Optional[int], wake: Callable[[], None]) -> None: ...
    def call(
        self,
        job: int,
        cache: Cache,
        key: Key,
        *,
        timeout: Optional[float] = None,
        tags: Optional[Iterable[str]] = None,
        weigher: Optional[Callable[[Any], int]] = None,
        refresh_after: Optional[float] = None,
    ) -> Tuple[bool, Any, Optional[float], List[_Action]]: ...
    def batch(self, job: int, cache: Cache, keys: List[Any]) -> List[_Action]: ...
    def computed(self, job: int, value: object) -> List[_Action]: ...
    def failed(self, job: int, exc: BaseException) -> List[_Action]: ...
    def give_up(self, job: int) -> List[_Action]: ...
    def abandon(self, job: int) -> List[_Action]: ...
    def drain(self) -> List[_Action]: ...
    def frames(self, job: int) -> List[Frame]: ...

@final
class CachedFunction:
    def __init__(
        self,
        cache_name: str,
        func: Callable[..., Any],
        prefix: str,
        key: Optional[Callable[..., Any]] = None,
        weigher: Optional[Callable[[Any], int]] = None,
        timeout: Optional[float] = None,
        tags: Optional[Iterable[str]] = None,
        refresh_after: Optional[float] = None,
    ) -> None: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __get__(self, instance: object, owner: Optional[type] = None) -> Any: ...
    def cache_key(self, *args: Any, **kwargs: Any) -> bytes: ...
    def invalidate(self, *args: Any, **kwargs: Any) -> bool: ...
    @property
    def cache_name(self) -> str: ...
