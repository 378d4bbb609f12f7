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
import itertools
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
    Protocol,
    Set,
    Tuple,
    TypeVar,
    overload,
)

from . import _native

#: The computations (their frames) the current asyncio context is inside: the core's
#: recursion and wait-cycle checks see them on every call a task makes.
_COMPUTING: contextvars.ContextVar[Tuple[_native.Frame, ...]] = contextvars.ContextVar(
    "coopcache_computing", default=()
)

#: Detached leader tasks (asyncio keeps only weak references to tasks).
_TASKS: Set[asyncio.Task[None]] = set()

_MISSING: Any = object()

#: A generator stored as a value would reach the second caller exhausted.
_GENERATOR_RESULT = (
    "the function returned a generator, which can be iterated once: "
    "return list(...) of its items to cache them"
)

_T = TypeVar("_T")
_F = TypeVar("_F", bound=Callable[..., Any])


def _default_key(fid: bytes, args: Tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The decorator's key, ``fid`` the function's id (``_native.function_id`` of its
    qualified name); encodes exactly as the native decorator's (tuples are lists)."""
    if kwargs:
        return (fid, args, tuple(sorted(kwargs.items())))
    return (fid, args)


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
    """The default key is ``(id of module.qualname, args)``: it must name this function, and only
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
            "it is defined inside a function call, so every function that call makes (closures) has that name"
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
            f'@coopcache.cached needs the cache\'s name: write @coopcache.cached("cache-name") '
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
            fid = _native.function_id(prefix)

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                k = key_fn(*args, **kwargs) if key_fn is not None else _default_key(fid, args, kwargs)
                return await cached_async(
                    name,
                    k,
                    lambda: func(*args, **kwargs),
                    timeout=timeout,
                    tags=tag_list,
                    weigher=weigher,
                    refresh_after=refresh_after,
                )

            return async_wrapper
        wrapper = _native.CachedFunction(
            name, func, prefix, key_fn, weigher, timeout, tag_list, refresh_after
        )
        functools.update_wrapper(wrapper, func)
        return wrapper

    return decorate


_K = TypeVar("_K")


class _ManyDecorator(Protocol):
    """``@cached_many(name)``: a sync loader makes a sync function, an async one an async one."""

    @overload
    def __call__(
        self, func: Callable[[List[_K]], Awaitable[Mapping[_K, _T]]]
    ) -> Callable[[Iterable[_K]], Awaitable[List[_T]]]: ...

    @overload
    def __call__(self, func: Callable[[List[_K]], Mapping[_K, _T]]) -> Callable[[Iterable[_K]], List[_T]]: ...


@overload
def cached_many(
    name: str, keys: Iterable[Any], loader: Callable[[List[Any]], Mapping[Any, _T]]
) -> List[_T]: ...


@overload
def cached_many(name: str) -> _ManyDecorator: ...


def cached_many(name: str, keys: Any = _MISSING, loader: Any = None) -> Any:
    """Call form ``cached_many(name, keys, loader)``: the values of ``keys``, in their order;
    stored keys are hits, keys another caller computes are waited for, and the rest are loaded
    by ONE call of ``loader(missing)``, which returns a dict of them to their values. (For an
    ``async def`` loader: ``await cached_many_async(name, keys, loader)``.)

    Decorator form ``@cached_many(name)`` on a function taking a list of ids and returning a
    dict of them to their values: calling it with ids returns their values as a list; each id
    is stored under ``(function id, id)`` (the function id as in ``cached``'s default key), so
    one cache may hold several such functions.
    On an ``async def`` function the result is an ``async def`` function too."""
    if keys is not _MISSING:
        if loader is None:
            raise TypeError("cached_many(name, keys, loader): the loader is missing")
        return _many_sync(_native.cache(name), _key_list(keys), loader)

    def decorate(func: Callable[[List[Any]], Any]) -> Callable[[Iterable[Any]], Any]:
        prefix = _prefix(func)
        _claim_default_key(name, func, prefix)
        fid = _native.function_id(prefix)

        def keyed(loaded: Mapping[Any, Any]) -> dict[Tuple[bytes, Any], Any]:
            return {(fid, k): v for k, v in loaded.items()}

        if inspect.iscoroutinefunction(func):

            async def load_async(missing: List[Tuple[bytes, Any]]) -> dict[Tuple[bytes, Any], Any]:
                return keyed(await func([k for _, k in missing]))

            @functools.wraps(func)
            async def async_wrapper(ids: Iterable[Any]) -> List[Any]:
                return await cached_many_async(name, [(fid, i) for i in ids], load_async)

            return async_wrapper

        def load(missing: List[Tuple[bytes, Any]]) -> dict[Tuple[bytes, Any], Any]:
            return keyed(func([k for _, k in missing]))

        @functools.wraps(func)
        def wrapper(ids: Iterable[Any]) -> List[Any]:
            return _many_sync(_native.cache(name), [(fid, i) for i in ids], load)

        return wrapper

    return decorate


def _many_sync(cache: _native.Cache, keys: List[Any], loader: Callable[[List[Any]], Any]) -> List[Any]:
    """A batch on this thread, on a table of its own: the loader runs here (its keys count as
    computed in its context: asking one of them is a recursion error); waits release the GIL."""
    ready = threading.Event()
    jobs = _native.Jobs(None, ready.set)
    actions = jobs.batch(0, cache, keys)
    while True:
        for _, code, obj, _ in actions:
            if code == _VALUE:
                return list(obj)
            if code == _ERROR:
                raise obj
        if actions and actions[-1][1] == _LOAD:
            token = _COMPUTING.set(_COMPUTING.get() + tuple(jobs.frames(0)))
            try:
                mapping = loader([keys[i] for i in actions[-1][2]])
            except BaseException as exc:
                actions = jobs.failed(0, exc)
            else:
                actions = jobs.computed(0, mapping)
            finally:
                _COMPUTING.reset(token)
        else:
            ready.wait()
            ready.clear()
            actions = jobs.drain()


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
    return await _driver().call(
        _native.cache(name),
        key,
        fn,
        timeout=timeout,
        tags=tags,
        weigher=weigher,
        refresh_after=refresh_after,
    )


@overload
async def cached_many_async(
    name: str, keys: Iterable[Any], loader: Callable[[List[Any]], Awaitable[Mapping[Any, _T]]]
) -> List[_T]: ...


@overload
async def cached_many_async(
    name: str, keys: Iterable[Any], loader: Callable[[List[Any]], Mapping[Any, _T]]
) -> List[_T]: ...


async def cached_many_async(name: str, keys: Iterable[Any], loader: Callable[[List[Any]], Any]) -> List[Any]:
    """``await cached_many_async(name, keys, loader)``: ``cached_many`` for asyncio. ``loader``
    may be an ``async def`` function (or return a plain dict); waiting never blocks the event
    loop, and the loader runs as a task of its own."""
    keys = _key_list(keys)
    return await _driver().many(_native.cache(name), keys, loader)  # type: ignore[no-any-return]


def _key_list(keys: Iterable[Any]) -> List[Any]:
    if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable):
        raise TypeError(
            f"cached_many: keys must be a list (or another iterable) of keys, got {keys!r} "
            f"of type {type(keys).__name__}"
        )
    return list(keys)


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


def _refresh_in_thread(run: Callable[[], None]) -> None:
    """A sync refresh (``refresh_after``): ``run()`` drives it on a table of its own, on a
    daemon thread named ``coopcache-refresh`` (tests join those), while the hit that started it
    returns."""
    threading.Thread(target=run, name="coopcache-refresh", daemon=True).start()


#: Job numbers, unique in the process: a task's context names the jobs it computes for.
_JOB_IDS = itertools.count(1)

#: The native table's actions: settle the caller with a value or an exception, run the
#: function, run the loader (with the keys at the given indices), nothing.
_VALUE, _ERROR, _COMPUTE, _LOAD, _GONE = 0, 1, 2, 3, 4

#: The current thread's driver, for its running event loop.
_LOCAL = threading.local()


class _Job:
    """A job's Python side: the function or loader, the caller's future (None: nobody waits,
    a refresh), a batch's keys, the caller's context, and the task computing for it."""

    __slots__ = ("fn", "fut", "keys", "ctx", "task")

    def __init__(self, fn: Callable[..., Any], fut: Optional[asyncio.Future[Any]], keys: List[Any]) -> None:
        self.fn, self.fut, self.keys = fn, fut, keys
        self.ctx = contextvars.copy_context()
        self.task: Optional[asyncio.Task[None]] = None


def _driver() -> _Driver:
    loop = asyncio.get_running_loop()
    d: Optional[_Driver] = getattr(_LOCAL, "driver", None)
    if d is None or d.loop is not loop:
        d = _LOCAL.driver = _Driver(loop)
    return d


def _wake_later(ref: weakref.ReferenceType[_Driver]) -> Callable[[], None]:
    """The table's wake-up (called on any thread), holding the driver weakly (no cycle through
    the native table)."""

    def wake() -> None:
        d = ref()
        if d is not None and not d.woken:
            d.woken = True
            try:
                d.loop.call_soon_threadsafe(d.drain)
            except RuntimeError:  # the loop is closed
                pass

    return wake


class _Driver:
    """One event loop's misses on the core's table of jobs (``_native.Jobs``), which decides
    every step: this runs the function (or loader) as a detached task when told, settles the
    callers' futures, and drains the table when a callback from any thread wakes the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.woken = False
        self.jobs = _native.Jobs(id(loop), _wake_later(weakref.ref(self)))
        self.states: dict[int, _Job] = {}

    def drain(self) -> None:
        self.woken = False
        self.act(self.jobs.drain())

    async def call(self, cache: _native.Cache, key: Any, fn: Callable[[], Any], **opts: Any) -> Any:
        job = next(_JOB_IDS)
        hit, value, timeout, actions = self.jobs.call(job, cache, key, **opts)
        if hit:
            if actions:  # its refresh, which this caller starts and nobody waits for
                self.states[job] = _Job(fn, None, [])
                self.act(actions)
            return value
        st = self.states[job] = _Job(fn, self.loop.create_future(), [])
        self.act(actions)
        return await self.wait(job, st, timeout)

    async def many(self, cache: _native.Cache, keys: List[Any], loader: Callable[..., Any]) -> Any:
        job = next(_JOB_IDS)
        actions = self.jobs.batch(job, cache, keys)
        st = self.states[job] = _Job(loader, self.loop.create_future(), keys)
        self.act(actions)
        return await self.wait(job, st, None)

    async def wait(self, job: int, st: _Job, timeout: Optional[float]) -> Any:
        """The caller's outcome; past its timeout, or cancelled, it gives up alone (the
        computation goes on while anyone waits for it)."""
        assert st.fut is not None
        timer = None if timeout is None else self.loop.call_later(timeout, self.give_up, job)
        try:
            return await st.fut
        except asyncio.CancelledError:
            self.give_up(job)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def give_up(self, job: int) -> None:
        self.act(self.jobs.give_up(job))

    def act(self, actions: List[Tuple[int, int, Any, bool]]) -> None:
        for job, code, obj, last in actions:
            st = self.states.get(job)
            if st is None:
                continue
            if code in (_VALUE, _ERROR):
                if st.fut is not None and not st.fut.done():
                    if code == _VALUE:
                        st.fut.set_result(obj)
                    else:
                        st.fut.set_exception(obj)
            elif code in (_COMPUTE, _LOAD):
                st.task = st.ctx.run(_detach, self.loop, self.compute(job, st, obj))
                st.task.add_done_callback(functools.partial(self.stopped, job))
            if last:
                del self.states[job]
                if code == _GONE and st.task is not None:
                    st.task.cancel()  # nobody waits for its computation any more

    def stopped(self, job: int, task: asyncio.Task[None]) -> None:
        """A computation's task ended; cancelled (before it started, too: its loop closed),
        it is abandoned: a waiter takes over (a no-op when nobody waits, the job is over)."""
        if task.cancelled():
            self.act(self.jobs.abandon(job))

    async def compute(self, job: int, st: _Job, at: Optional[List[int]]) -> None:
        """The function (or the loader, with the keys at ``at``) as a task of its own, in a copy
        of the caller's context that carries its computations (the core's recursion checks
        see them on every call it makes, after an await too). Whatever it raises is its
        outcome, for every caller. Only this task being cancelled (nobody waits any more, or
        its loop is closing) abandons it: then a waiter takes over."""
        _COMPUTING.set(_COMPUTING.get() + tuple(self.jobs.frames(job)))
        try:
            result = st.fn() if at is None else st.fn([st.keys[i] for i in at])
            if inspect.isawaitable(result):
                result = await result
            if inspect.isgenerator(result) or inspect.isasyncgen(result):
                raise TypeError(_GENERATOR_RESULT)
        except BaseException as exc:
            st.task = None
            if isinstance(exc, asyncio.CancelledError) and _cancel_requested():
                raise  # abandoned: see stopped
            self.act(self.jobs.failed(job, exc))
        else:
            st.task = None
            self.act(self.jobs.computed(job, result))
