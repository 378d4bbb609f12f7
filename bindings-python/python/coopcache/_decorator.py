"""The decorator form of ``cached`` and the asyncio forms.

Sync functions are wrapped by a native callable (the key is built and looked up in Rust, and a
miss is driven there too). For async functions and ``cached_async``, the core's call driver
decides every step; this module only runs the function, awaits, and settles futures: the
leader's computation runs as its own detached task (cancelling the caller who started it does
not cancel it for the others), and every caller waits on an asyncio future resolved from
whichever thread or event loop makes its step ready.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import sys
import threading
import weakref
from typing import (
    Any,
    Awaitable,
    Callable,
    Iterable,
    List,
    Mapping,
    Optional,
    Set,
    Tuple,
    TypeVar,
    overload,
)

from . import _native

_get_running_loop = asyncio._get_running_loop

#: The computations (their frames) the current asyncio context is inside: the core's
#: recursion and wait-cycle checks see them on every call a task makes.
_COMPUTING: contextvars.ContextVar[Tuple[_native.Frame, ...]] = contextvars.ContextVar(
    "coopcache_computing", default=()
)

#: Detached leader tasks (asyncio keeps only weak references to tasks).
_TASKS: Set[asyncio.Task[None]] = set()

_MISSING: Any = object()

# The native steps' codes.
_DONE, _FAILED, _WAIT, _LEAD, _COMPUTE, _REFRESH = 0, 1, 2, 3, 4, 5

#: A generator stored as a value would reach the second caller exhausted.
_GENERATOR_RESULT = (
    "the function returned a generator, which can be iterated once: "
    "return list(...) of its items to cache them"
)

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


def _refuse_generator(name: str, func: Callable[..., Any]) -> None:
    """A generator function's result is an iterator, consumed once: cached, the second caller
    would get it exhausted."""
    if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
        raise TypeError(
            f"coopcache.cached({name!r}): {_prefix(func)} is a generator function; its result "
            "can be iterated once, so it cannot be cached: cache a function that returns "
            "list(...) of its items instead"
        )


def _claim_default_key(name: str, func: Callable[..., Any], prefix: str) -> None:
    """The default key is ``(module.qualname, args)``: it must name this function, and only
    this one, in every process that shares the cache. A name that several functions share
    (lambdas, functions defined inside a function call: closures of one factory) or that
    another function already holds in this cache is refused; ``key=`` names the call instead."""
    qualname = getattr(func, "__qualname__", None)
    why = None
    if not isinstance(qualname, str):
        why = "it has no __qualname__ (not a def or class function)"
    elif "<lambda>" in qualname:
        why = "every lambda of a module has that name"
    elif "<locals>" in qualname:
        why = (
            "it is defined inside a function call, so every function that call makes "
            "(closures) has that name"
        )
    if why is not None:
        raise TypeError(
            f"coopcache.cached({name!r}): cannot use the default key for {prefix}: {why}; "
            "give key=lambda *args: (...) a key that tells this function's calls apart"
        )
    try:
        weakref.ref(func)
    except TypeError:  # not weak-referenceable: its name cannot be freed when it dies
        return
    # The core refuses a name another live function holds in this cache.
    if _native.claim_name(name, prefix, id(func)):
        weakref.finalize(func, _native.release_name, name, prefix, id(func)).atexit = False


@overload
def cached(
    name: str,
    key: Any,
    fn: Callable[[], _native.NoCache[_T]],
    *,
    timeout: Optional[float] = None,
    tags: Optional[Iterable[str]] = None,
    weigher: Optional[Callable[[Any], int]] = None,
    refresh_after: Optional[float] = None,
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
    refresh_after: Optional[float] = None,
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
    refresh_after: Optional[float] = None,
) -> Callable[[_F], _F]: ...


def cached(
    name: str,
    key: Any = _MISSING,
    fn: Optional[Callable[[], Any]] = None,
    *,
    timeout: Optional[float] = None,
    tags: Optional[Iterable[str]] = None,
    weigher: Optional[Callable[[Any], int]] = None,
    refresh_after: Optional[float] = None,
) -> Any:
    """Call form ``cached(name, key, fn)``: the value for ``key``, computed by ``fn()`` once
    however many callers ask at the same moment.

    Decorator form ``@cached(name)`` (also ``@cached(name, key=..., weigher=..., timeout=...,
    tags=..., refresh_after=...)``) for plain and ``async def`` functions: the key is the
    function's module and qualified name plus its arguments, or whatever ``key(*args,
    **kwargs)`` returns. ``refresh_after`` (seconds) overrides the cache's for the values
    stored.
    """
    if callable(name) and key is _MISSING and fn is None:
        raise TypeError(
            f"@coopcache.cached needs the cache's name: write @coopcache.cached(\"cache-name\") "
            f"above {_prefix(name)} (got the function itself)"
        )
    if fn is not None:
        if key is _MISSING:
            raise TypeError("cached(name, key, fn): the key is missing")
        return _native.cached(
            name, key, fn, timeout=timeout, tags=tags, weigher=weigher, refresh_after=refresh_after
        )
    if key is not _MISSING and key is not None and not callable(key):
        raise TypeError(
            "cached(name, key) without fn: give the function to compute the value "
            "(cached(name, key, fn)), or use @cached(name, key=callable) as a decorator"
        )
    key_fn = None if key is _MISSING else key
    tag_list = _tag_list(tags)

    def decorate(func: Callable[..., Any]) -> Any:
        _refuse_generator(name, func)
        prefix = _prefix(func)
        if key_fn is None:
            _claim_default_key(name, func, prefix)
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                k = key_fn(*args, **kwargs) if key_fn is not None else _default_key(prefix, args, kwargs)
                return await cached_async(
                    name, k, lambda: func(*args, **kwargs),
                    timeout=timeout, tags=tag_list, weigher=weigher, refresh_after=refresh_after,
                )

            return async_wrapper
        wrapper = _native.CachedFunction(
            name, func, prefix, key_fn, weigher, timeout, tag_list, refresh_after
        )
        functools.update_wrapper(wrapper, func)
        return wrapper

    return decorate


_K = TypeVar("_K")


@overload
def cached_many(
    name: str, keys: Iterable[Any], loader: Callable[[List[Any]], Mapping[Any, _T]]
) -> List[_T]: ...


@overload
def cached_many(
    name: str,
) -> Callable[[Callable[[List[_K]], Mapping[_K, _T]]], Callable[[Iterable[_K]], List[_T]]]: ...


def cached_many(name: str, keys: Any = _MISSING, loader: Any = None) -> Any:
    """Call form ``cached_many(name, keys, loader)``: the values of ``keys``, in their order;
    stored keys are hits, keys another caller computes are waited for, and the rest are loaded
    by ONE call of ``loader(missing)``, which returns a dict of them to their values.

    Decorator form ``@cached_many(name)`` on a function taking a list of ids and returning a
    dict of them to their values: calling it with ids returns their values as a list; each id
    is stored under ``(module.qualname, id)``, so one cache may hold several such functions."""
    if keys is not _MISSING:
        if loader is None:
            raise TypeError("cached_many(name, keys, loader): the loader is missing")
        return _native.cached_many(name, keys, loader)

    def decorate(func: Callable[[List[Any]], Mapping[Any, Any]]) -> Callable[[Iterable[Any]], List[Any]]:
        prefix = _prefix(func)
        _claim_default_key(name, func, prefix)

        def load(missing: List[Tuple[str, Any]]) -> dict[Tuple[str, Any], Any]:
            return {(prefix, k): v for k, v in func([k for _, k in missing]).items()}

        @functools.wraps(func)
        def wrapper(ids: Iterable[Any]) -> List[Any]:
            return _native.cached_many(name, [(prefix, i) for i in ids], load)

        return wrapper

    return decorate


# One overload per kind of `fn` (a union of them in one signature leaves type checkers to
# guess `_T`: mypy made an async function's value `NoCache[Never]`).
@overload
async def cached_async(
    name: str,
    key: Any,
    fn: Callable[[], Awaitable[_native.NoCache[_T]]],
    *,
    timeout: Optional[float] = None,
    tags: Optional[Iterable[str]] = None,
    weigher: Optional[Callable[[Any], int]] = None,
    refresh_after: Optional[float] = None,
) -> _T: ...


@overload
async def cached_async(
    name: str,
    key: Any,
    fn: Callable[[], Awaitable[_T]],
    *,
    timeout: Optional[float] = None,
    tags: Optional[Iterable[str]] = None,
    weigher: Optional[Callable[[Any], int]] = None,
    refresh_after: Optional[float] = None,
) -> _T: ...


@overload
async def cached_async(
    name: str,
    key: Any,
    fn: Callable[[], _native.NoCache[_T]],
    *,
    timeout: Optional[float] = None,
    tags: Optional[Iterable[str]] = None,
    weigher: Optional[Callable[[Any], int]] = None,
    refresh_after: Optional[float] = None,
) -> _T: ...


@overload
async def cached_async(
    name: str,
    key: Any,
    fn: Callable[[], _T],
    *,
    timeout: Optional[float] = None,
    tags: Optional[Iterable[str]] = None,
    weigher: Optional[Callable[[Any], int]] = None,
    refresh_after: Optional[float] = None,
) -> _T: ...


async def cached_async(
    name: str,
    key: Any,
    fn: Callable[[], Any],
    *,
    timeout: Optional[float] = None,
    tags: Optional[Iterable[str]] = None,
    weigher: Optional[Callable[[Any], int]] = None,
    refresh_after: Optional[float] = None,
) -> Any:
    """The value for ``key``, computed once by ``fn()`` (an ``async def`` function, or one that
    returns an awaitable or a plain value). Waiting never blocks the event loop; cancelling
    the task that started the computation does not cancel it for the others. A hit due for
    refresh (``refresh_after``) returns the stored value and runs the refresh as a detached
    task on this loop."""
    kind, obj = _native.cache(name)._call(
        key, timeout=timeout, tags=tags, weigher=weigher, refresh_after=refresh_after
    )
    if kind == _DONE:
        return obj  # a hit
    if kind == _REFRESH:  # a hit whose refresh this caller starts; nobody waits for it
        value, refresh = obj
        _detach(asyncio.get_running_loop(), _lead(refresh, fn))
        return value
    call: _native.Call = obj
    try:
        loop = asyncio.get_running_loop()
        deadline = None if call.timeout is None else loop.time() + call.timeout
        while True:
            kind, obj = call.step()
            if kind == _DONE:
                return obj
            if kind == _FAILED:
                raise obj
            if kind == _WAIT:
                if not await _ready(obj, loop, deadline):
                    raise call.timed_out()
            else:  # _LEAD: the computation runs as a task of its own; this caller waits for it
                lead: _native.Lead = obj
                task = _detach(loop, _lead(lead, fn))
                lead.on_abandoned(functools.partial(_cancel_soon, loop, task))
    finally:
        call.close()  # before it is done: this caller gave up (the others go on)


if sys.version_info >= (3, 11):

    def _start(loop: asyncio.AbstractEventLoop, coro: Any) -> asyncio.Task[None]:
        return loop.create_task(coro)

    def _cancel_requested() -> bool:
        """Whether the current task was asked to stop (not a CancelledError of its own)."""
        task = asyncio.current_task()
        return task is not None and task.cancelling() > 0

else:

    class _LeadTask(asyncio.Task):  # type: ignore[type-arg]
        """A task that records being asked to stop (Task.cancelling is Python 3.11+)."""

        cancel_requested = False

        def cancel(self, msg: Any = None) -> bool:
            self.cancel_requested = True
            return super().cancel(msg)

    def _start(loop: asyncio.AbstractEventLoop, coro: Any) -> asyncio.Task[None]:
        return _LeadTask(coro, loop=loop)

    def _cancel_requested() -> bool:
        """Whether the current task was asked to stop (not a CancelledError of its own)."""
        return bool(getattr(asyncio.current_task(), "cancel_requested", False))


def _detach(loop: asyncio.AbstractEventLoop, coro: Any) -> asyncio.Task[None]:
    """Runs ``coro`` as a task of ``loop`` that nobody awaits (kept in ``_TASKS``)."""
    task = _start(loop, coro)
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)
    return task


def _refresh_in_thread(
    lead: _native.Lead, fn: Callable[..., Any], args: Tuple[Any, ...], kwargs: Any
) -> None:
    """A sync refresh (``refresh_after``): ``fn(*args, **kwargs)`` on a daemon thread named
    ``coopcache-refresh`` (tests join those), while the hit that started it returns."""
    threading.Thread(
        target=lead.run, args=(fn, args, kwargs), name="coopcache-refresh", daemon=True
    ).start()


def _cancel_soon(loop: asyncio.AbstractEventLoop, task: asyncio.Task[None]) -> None:
    try:
        loop.call_soon_threadsafe(task.cancel)
    except RuntimeError:  # the loop is closed
        pass


def _settle(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def _ready(signal: _native.Signal, loop: asyncio.AbstractEventLoop, deadline: Optional[float]) -> bool:
    """Waits without blocking the loop until ``signal`` is ready (True) or the deadline passes
    (False)."""
    if signal.ready():
        return True
    fut: asyncio.Future[None] = loop.create_future()

    def on_ready() -> None:  # any thread, GIL held
        if _get_running_loop() is loop:  # on the loop's own thread (a task of it made it ready)
            _settle(fut)
            return
        try:
            loop.call_soon_threadsafe(_settle, fut)
        except RuntimeError:  # the loop is closed
            pass

    signal.on_ready(on_ready)
    if deadline is None:
        await fut
        return True
    done, _ = await asyncio.wait((fut,), timeout=max(0.0, deadline - loop.time()))
    return bool(done)


async def _lead(lead: _native.Lead, fn: Callable[[], Any]) -> None:
    """The computation, as a task of its own (in a copy of the caller's context). It runs the
    function when the core says so and reports how it ended; whatever the function raises is
    its outcome, for every caller. Only this task being cancelled (nobody waits any more, or
    its loop is closing) abandons it: then a waiter takes over."""
    _COMPUTING.set(_COMPUTING.get() + (lead.frame,))
    loop = asyncio.get_running_loop()
    lead.runs_on(id(loop))  # a blocking call on this loop's thread for this key fails, not hangs
    try:
        while True:
            kind, signal = lead.step()
            if kind == _WAIT:
                assert signal is not None
                await _ready(signal, loop, None)
            elif kind == _COMPUTE:
                try:
                    result = fn()
                    if inspect.isawaitable(result):
                        result = await result
                    if inspect.isgenerator(result) or inspect.isasyncgen(result):
                        raise TypeError(_GENERATOR_RESULT)
                except BaseException as exc:
                    if isinstance(exc, asyncio.CancelledError) and _cancel_requested():
                        raise  # abandoned: closed below, a waiter takes over
                    lead.failed(exc)
                else:
                    lead.computed(result)
            else:
                return
    finally:
        lead.close()  # a no-op once done
