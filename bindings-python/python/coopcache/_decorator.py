"""The decorator form of ``cached`` and the asyncio forms.

Sync functions are wrapped by a native callable (the key is built and looked up in Rust).
Async functions and ``cached_async`` drive the core's flight protocol from here: the leader's
computation runs as its own detached task (cancelling the caller who started it does not
cancel it for the others), and every caller waits on an asyncio future resolved from whichever
thread or event loop finishes the flight.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from typing import Any, Awaitable, Callable, Iterable, Optional, Set, Tuple, TypeVar, Union, overload

from . import _native

_get_running_loop = asyncio._get_running_loop

#: Flight ids whose computation runs in the current asyncio context (recursion detection).
_COMPUTING: contextvars.ContextVar[Tuple[int, ...]] = contextvars.ContextVar(
    "coopcache_computing", default=()
)

#: Detached leader tasks (asyncio keeps only weak references to tasks).
_TASKS: Set[asyncio.Task[None]] = set()

_MISSING: Any = object()

#: How long a leader waits for Redis to confirm its write (shared mode), in seconds.
_PUBLISH_WAIT = 5.0

_T = TypeVar("_T")
_F = TypeVar("_F", bound=Callable[..., Any])


def _default_key(prefix: str, args: Tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The decorator's key; encodes exactly as the native decorator's (tuples are lists)."""
    if kwargs:
        return (prefix, args, tuple(sorted(kwargs.items())))
    return (prefix, args)


def _tag_list(tags: Optional[Iterable[str]]) -> Optional[list[str]]:
    if tags is None:
        return None
    if isinstance(tags, (str, bytes)):
        raise TypeError("tags must be a list of str (got a single str; wrap it in a list)")
    return list(tags)


def _prefix(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None) or ""
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return f"{module}.{qualname}" if module else qualname


@overload
def cached(
    name: str,
    key: Any,
    fn: Callable[[], _native.NoCache[_T]],
    *,
    timeout: Optional[float] = None,
    tags: Optional[Iterable[str]] = None,
    weigher: Optional[Callable[[Any], int]] = None,
) -> _T: ...


@overload
def cached(
    name: str,
    key: Any,
    fn: Callable[[], _T],
    *,
    timeout: Optional[float] = None,
    tags: Optional[Iterable[str]] = None,
    weigher: Optional[Callable[[Any], int]] = None,
) -> _T: ...


@overload
def cached(
    name: str,
    key: Optional[Callable[..., Any]] = None,
    fn: None = None,
    *,
    timeout: Optional[float] = None,
    tags: Optional[Iterable[str]] = None,
    weigher: Optional[Callable[[Any], int]] = None,
) -> Callable[[_F], _F]: ...


def cached(
    name: str,
    key: Any = _MISSING,
    fn: Optional[Callable[[], Any]] = None,
    *,
    timeout: Optional[float] = None,
    tags: Optional[Iterable[str]] = None,
    weigher: Optional[Callable[[Any], int]] = None,
) -> Any:
    """Call form ``cached(name, key, fn)``: the value for ``key``, computed by ``fn()`` once
    however many callers ask at the same moment.

    Decorator form ``@cached(name)`` (also ``@cached(name, key=..., weigher=..., timeout=...,
    tags=...)``) for plain and ``async def`` functions: the key is the function's module and
    qualified name plus its arguments, or whatever ``key(*args, **kwargs)`` returns.
    """
    if fn is not None:
        if key is _MISSING:
            raise TypeError("cached(name, key, fn): the key is missing")
        return _native.cached(name, key, fn, timeout=timeout, tags=tags, weigher=weigher)
    if key is not _MISSING and key is not None and not callable(key):
        raise TypeError(
            "cached(name, key) without fn: give the function to compute the value "
            "(cached(name, key, fn)), or use @cached(name, key=callable) as a decorator"
        )
    key_fn = None if key is _MISSING else key
    tag_list = _tag_list(tags)

    def decorate(func: Callable[..., Any]) -> Any:
        prefix = _prefix(func)
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                k = key_fn(*args, **kwargs) if key_fn is not None else _default_key(prefix, args, kwargs)
                return await cached_async(
                    name, k, lambda: func(*args, **kwargs),
                    timeout=timeout, tags=tag_list, weigher=weigher,
                )

            return async_wrapper
        wrapper = _native.CachedFunction(name, func, prefix, key_fn, weigher, timeout, tag_list)
        functools.update_wrapper(wrapper, func)
        return wrapper

    return decorate


async def cached_async(
    name: str,
    key: Any,
    fn: Callable[[], Union[Awaitable[Union[_T, _native.NoCache[_T]]], _T, _native.NoCache[_T]]],
    *,
    timeout: Optional[float] = None,
    tags: Optional[Iterable[str]] = None,
    weigher: Optional[Callable[[Any], int]] = None,
) -> _T:
    """The value for ``key``, computed once by ``fn()`` (an ``async def`` function, or one that
    returns an awaitable or a plain value). Waiting never blocks the event loop; cancelling
    the task that started the computation does not cancel it for the others."""
    cache = _native.cache(name)
    tag_list = _tag_list(tags)
    if timeout is not None and timeout < 0:
        raise ValueError(f"invalid timeout: {timeout} (expected seconds >= 0, or None)")
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    while True:
        kind, obj = cache._begin(key)
        if kind == 0:
            return obj  # type: ignore[no-any-return]
        if kind == 1:
            lease: _native.Lease = obj
            waiter = lease.waiter()
            task = loop.create_task(_lead(lease, fn, tag_list, weigher))
            _TASKS.add(task)
            task.add_done_callback(_TASKS.discard)
            lease.on_abandoned(functools.partial(_cancel_soon, loop, task))
        else:
            waiter = obj
        outcome, payload = await _wait(waiter, loop, deadline, timeout)
        if outcome == 0:
            return payload  # type: ignore[no-any-return]
        if outcome == 1:
            raise payload
        # 2: the leader went away unfinished; begin again (one of the waiters leads).


def _cancel_soon(loop: asyncio.AbstractEventLoop, task: asyncio.Task[None]) -> None:
    try:
        loop.call_soon_threadsafe(task.cancel)
    except RuntimeError:  # the loop is closed
        pass


def _settle(fut: asyncio.Future[Tuple[int, Any]], kind: int, payload: Any) -> None:
    if not fut.done():
        fut.set_result((kind, payload))


async def _wait(
    waiter: Any,
    loop: asyncio.AbstractEventLoop,
    deadline: Optional[float],
    timeout: Optional[float],
) -> Tuple[int, Any]:
    """Waits for a flight without blocking the loop; the waiter is released on every exit
    (value, timeout, cancellation), which is how the core counts who still waits."""
    try:
        ready = waiter.try_get()
        if ready is not None:
            return ready  # type: ignore[no-any-return]
        fut: asyncio.Future[Tuple[int, Any]] = loop.create_future()

        def on_ready(kind: int, payload: Any) -> None:  # any thread, GIL held
            if _get_running_loop() is loop:  # on the loop's own thread (a task of it finished)
                _settle(fut, kind, payload)
                return
            try:
                loop.call_soon_threadsafe(_settle, fut, kind, payload)
            except RuntimeError:  # the loop is closed
                pass

        waiter.on_ready(on_ready)
        if deadline is None:
            return await fut
        remaining = max(0.0, deadline - loop.time())
        done, _ = await asyncio.wait((fut,), timeout=remaining)
        if not done:
            raise TimeoutError(
                f"timed out after {timeout:.3f} s waiting for the value "
                "(the computation goes on for the others)"
            )
        return fut.result()
    finally:
        waiter.cancel()


async def _lead(
    lease: _native.Lease,
    fn: Callable[[], Any],
    tags: Optional[list[str]],
    weigher: Optional[Callable[[Any], int]],
) -> None:
    """The leader's computation, as its own task (a copy of the caller's context). In shared
    mode it first asks the shared tier (Redis): the value may be there, or being computed by
    another process; then it tells the other processes what it computed."""
    _COMPUTING.set(_COMPUTING.get() + (lease.id,))
    loop = asyncio.get_running_loop()
    slot = lease.slot()
    try:
        try:
            try:
                if not slot.ready():
                    await _wait(slot, loop, None, None)
                ask = lease.ask_remote()
                if ask is not None:
                    await _wait(ask, loop, None, None)
                    answered, _ = lease.answer_remote(ask, weigher)
                    if answered != 2:  # the flight is finished: a value or an error from Redis
                        return
                result = fn()
                if inspect.isawaitable(result):
                    result = await result
            finally:
                slot.release()
            if isinstance(result, _native.NoCache):
                kind, payload, weight = 1, result.value, None
            else:
                kind, payload, weight = 0, result, None if weigher is None else weigher(result)
        except Exception as exc:  # reaches every waiter, not stored
            kind, payload, weight = 2, exc, None
        # Shared mode: the other processes first; wait (bounded) for Redis to confirm, so the
        # write is not lost if this process exits right after its callers got the value.
        publish = lease.publish(kind, payload, tags)
        if publish is not None:
            try:
                await _wait(publish, loop, loop.time() + _PUBLISH_WAIT, _PUBLISH_WAIT)
            except TimeoutError:
                pass
        try:
            if kind == 0:
                lease.store(payload, weight, tags)
            elif kind == 1:
                lease.nocache(payload)
            else:
                lease.fail(payload)
        except Exception as exc:  # e.g. tags that are not str
            lease.fail(exc)
    except BaseException:  # cancelled (nobody waits any more) or interrupted: hand over
        lease.abandon()
        raise
    finally:
        lease.abandon()  # no-op once finished
