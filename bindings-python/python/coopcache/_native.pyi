"""Type stubs of the native module (the Rust core, through pyo3)."""

from typing import (
    Any,
    Awaitable,
    Callable,
    Dict,
    Generic,
    Iterable,
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

class UnknownCacheError(KeyError):
    """No cache of that name was configured; the message lists the configured names."""

class CacheRecursionError(RecursionError):
    """A computation asked for its own key of its own cache."""

@final
class NoCache(Generic[_T]):
    """A value returned to every caller but not stored (see :func:`nocache`)."""
    @property
    def value(self) -> _T: ...

def nocache(value: _T) -> NoCache[_T]:
    """Marks a computed value as "return it, but do not store it"."""
    ...

@final
class Cache:
    """A handle on one named cache, returned by :func:`configure`."""
    @property
    def name(self) -> str: ...
    def get(self, key: Key, default: Optional[_T] = None) -> Any: ...
    def invalidate(self, key: Key) -> bool: ...
    def invalidate_tag(self, tag: str) -> int: ...
    def clear(self) -> None: ...
    def stats(self) -> Dict[str, Any]: ...
    @overload
    def cached(
        self,
        key: Key,
        func: Callable[[], NoCache[_T]],
        *,
        timeout: Optional[float] = None,
        tags: Optional[Iterable[str]] = None,
        weigher: Optional[Callable[[Any], int]] = None,
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
    ) -> Callable[[_F], _F]: ...
    async def cached_async(
        self,
        key: Key,
        func: Callable[[], Union[Awaitable[Union[_T, NoCache[_T]]], _T, NoCache[_T]]],
        *,
        timeout: Optional[float] = None,
        tags: Optional[Iterable[str]] = None,
        weigher: Optional[Callable[[Any], int]] = None,
    ) -> _T: ...
    def _begin(self, key: Key) -> Tuple[int, Any]: ...

def configure(
    name: str,
    memory_limit: Optional[Union[int, float]] = None,
    cache_duration: Optional[float] = None,
    when_full: Optional[str] = None,
    max_concurrency: Optional[int] = None,
    redis_url: Optional[str] = None,
    serializer: Optional[Literal["pickle", "json"]] = None,
    secret: Optional[Union[str, bytes]] = None,
    lease_ttl: Optional[float] = None,
) -> Cache: ...
def cache(name: str) -> Cache: ...
@overload
def cached(
    name: str,
    key: Key,
    func: Callable[[], NoCache[_T]],
    *,
    timeout: Optional[float] = None,
    tags: Optional[Iterable[str]] = None,
    weigher: Optional[Callable[[Any], int]] = None,
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
) -> _T: ...
def get(name: str, key: Key, default: Optional[_T] = None) -> Any: ...
def invalidate(name: str, key: Key) -> bool: ...
def invalidate_tag(name: str, tag: str) -> int: ...
def clear(name: str) -> None: ...
def stats(name: str) -> Dict[str, Any]: ...
def names() -> list[str]: ...
def key_bytes(key: Key) -> bytes: ...
def estimate_size(value: object) -> int: ...
def _init(logger: Any, computing: Any) -> None: ...
def _shutdown() -> None: ...

@final
class Waiter:
    @property
    def id(self) -> int: ...
    def on_ready(self, callback: Callable[[int, Any], None]) -> None: ...
    def try_get(self) -> Optional[Tuple[int, Any]]: ...
    def cancel(self) -> None: ...

@final
class SlotWaiter:
    def on_ready(self, callback: Callable[[int, Any], None]) -> None: ...
    def try_get(self) -> Optional[Tuple[int, Any]]: ...
    def ready(self) -> bool: ...
    def cancel(self) -> None: ...
    def release(self) -> None: ...

@final
class Lease:
    @property
    def id(self) -> int: ...
    def waiter(self) -> Waiter: ...
    def slot(self) -> SlotWaiter: ...
    def on_abandoned(self, callback: Callable[[], None]) -> None: ...
    def ask_remote(self) -> Optional[RemoteWaiter]: ...
    def answer_remote(
        self, waiter: RemoteWaiter, weigher: Optional[Callable[[Any], int]] = None
    ) -> Tuple[int, Any]: ...
    def publish(
        self, kind: int, payload: Any, tags: Optional[Iterable[str]] = None
    ) -> Optional[PublishWaiter]: ...
    def store(
        self, value: object, weight: Optional[int] = None, tags: Optional[Iterable[str]] = None
    ) -> None: ...
    def nocache(self, value: object) -> None: ...
    def fail(self, exc: BaseException) -> None: ...
    def abandon(self) -> None: ...

@final
class RemoteWaiter:
    def on_ready(self, callback: Callable[[int, Any], None]) -> None: ...
    def try_get(self) -> Optional[Tuple[int, Any]]: ...
    def cancel(self) -> None: ...

@final
class PublishWaiter:
    def on_ready(self, callback: Callable[[int, Any], None]) -> None: ...
    def try_get(self) -> Optional[Tuple[int, Any]]: ...
    def cancel(self) -> None: ...

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
    ) -> None: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __get__(self, instance: object, owner: Optional[type] = None) -> Any: ...
    def cache_key(self, *args: Any, **kwargs: Any) -> bytes: ...
    def invalidate(self, *args: Any, **kwargs: Any) -> bool: ...
    @property
    def cache_name(self) -> str: ...
