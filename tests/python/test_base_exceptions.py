"""A computation's own exception, whatever it is (any BaseException: KeyboardInterrupt,
SystemExit, asyncio.CancelledError, a subclass of the user's own), reaches every caller waiting
for it (the same object) and is not stored; the next call computes again. Only a caller that
gives up stops alone, and a computation is abandoned (a waiter takes over) only when nobody waits
for it any more.

Each function returns "a second run" if it is ever run again, so a computation that was handed
over instead of shared shows up as a wrong value, not as a hang."""

import asyncio
import threading
from typing import Any, Awaitable, Callable, List

import coopcache
import pytest
from helpers import until, wait_until, waiting


class Halt(BaseException):
    """A BaseException of the user's own."""


Make = Callable[[], BaseException]

KINDS: List[Make] = [
    KeyboardInterrupt,
    lambda: SystemExit(3),
    asyncio.CancelledError,
    lambda: Halt("halt"),
]
IDS = ["KeyboardInterrupt", "SystemExit", "CancelledError", "BaseException-subclass"]

N = 8


async def outcome(aw: Awaitable[Any]) -> Any:
    """What an awaitable gave: its value or the exception it raised (any BaseException)."""
    try:
        return await aw
    except BaseException as e:  # noqa: B036 - the test inspects what each caller got
        return e


def in_thread(got: List[Any], fn: Callable[[], Any]) -> threading.Thread:
    """A started thread that appends what `fn()` gave (value or exception) to `got`."""

    def run() -> None:
        try:
            got.append(fn())
        except BaseException as e:  # noqa: B036 - the test inspects what each caller got
            got.append(e)

    t = threading.Thread(target=run)
    t.start()
    return t


def assert_not_stored_and_computed_again(name: str, runs: List[int]) -> None:
    assert coopcache.get(name, "k") is None
    s = coopcache.stats(name)
    assert s["errors"] == 1 and s["entries"] == 0 and s["in_flight"] == 0
    assert coopcache.cached(name, "k", lambda: "again") == "again"
    assert len(runs) == 1  # `lambda: "again"` computed it, not the failed function


@pytest.mark.parametrize("make", KINDS, ids=IDS)
def test_threads_every_waiter_gets_the_leaders_base_exception(name: str, make: Make) -> None:
    exc = make()
    runs: List[int] = []
    barrier = threading.Barrier(N)

    def compute() -> str:
        runs.append(1)
        if len(runs) > 1:
            return "a second run"
        wait_until(waiting(name, N - 1), "every other thread waits")
        raise exc

    def call() -> Any:
        barrier.wait()
        return coopcache.cached(name, "k", compute)

    got: List[Any] = []
    for t in [in_thread(got, call) for _ in range(N)]:
        t.join()
    assert runs == [1]
    assert len(got) == N and all(g is exc for g in got), got
    assert_not_stored_and_computed_again(name, runs)


@pytest.mark.parametrize("make", KINDS, ids=IDS)
def test_asyncio_every_waiter_gets_the_leaders_base_exception(name: str, make: Make) -> None:
    exc = make()
    runs: List[int] = []

    @coopcache.cached(name, key=lambda: "k")
    async def compute() -> str:
        runs.append(1)
        if len(runs) > 1:
            return "a second run"
        await until(waiting(name, N - 1))
        raise exc

    async def main() -> List[Any]:
        return list(await asyncio.gather(*(outcome(compute()) for _ in range(N))))

    got = asyncio.run(main())
    assert runs == [1]
    assert len(got) == N and all(g is exc for g in got), got
    assert_not_stored_and_computed_again(name, runs)


@pytest.mark.parametrize("make", KINDS, ids=IDS)
def test_thread_leader_base_exception_reaches_threads_and_tasks(name: str, make: Make) -> None:
    exc = make()
    runs: List[int] = []

    def compute() -> str:
        runs.append(1)
        if len(runs) > 1:
            return "a second run"
        wait_until(waiting(name, 3), "a thread and two tasks wait")
        raise exc

    got: List[Any] = []
    leader = in_thread(got, lambda: coopcache.cached(name, "k", compute))
    wait_until(lambda: coopcache.stats(name)["in_flight"] == 1, "the thread leads")
    other = in_thread(got, lambda: coopcache.cached(name, "k", compute))

    async def main() -> List[Any]:
        calls = (outcome(coopcache.cached_async(name, "k", compute)) for _ in range(2))
        return list(await asyncio.gather(*calls))

    got += asyncio.run(main())
    leader.join()
    other.join()
    assert runs == [1]
    assert len(got) == 4 and all(g is exc for g in got), got
    assert_not_stored_and_computed_again(name, runs)


@pytest.mark.parametrize("make", KINDS, ids=IDS)
def test_task_leader_base_exception_reaches_tasks_and_threads(name: str, make: Make) -> None:
    exc = make()
    runs: List[int] = []

    async def compute() -> str:
        runs.append(1)
        if len(runs) > 1:
            return "a second run"
        await until(waiting(name, 3))
        raise exc

    def compute_sync() -> str:
        runs.append(1)
        return "a second run"

    got: List[Any] = []
    threads: List[threading.Thread] = []

    async def main() -> List[Any]:
        leader = asyncio.ensure_future(outcome(coopcache.cached_async(name, "k", compute)))
        await until(lambda: coopcache.stats(name)["in_flight"] == 1)
        other = asyncio.ensure_future(outcome(coopcache.cached_async(name, "k", compute)))
        threads.extend(in_thread(got, lambda: coopcache.cached(name, "k", compute_sync)) for _ in range(2))
        return [await leader, await other]

    got += asyncio.run(main())
    for t in threads:
        t.join()
    assert runs == [1]
    assert len(got) == 4 and all(g is exc for g in got), got
    assert_not_stored_and_computed_again(name, runs)


def test_async_function_raising_cancelled_error_returns_it(name: str) -> None:
    """The issue's reproduction: it used to re-run ~50,000 times a second and never return."""
    runs: List[int] = []

    @coopcache.cached(name, key=lambda: "f")
    async def f() -> str:
        runs.append(1)
        raise asyncio.CancelledError()

    async def main() -> None:
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(f(), 10)

    asyncio.run(main())
    assert runs == [1]
    assert coopcache.stats(name)["in_flight"] == 0


def test_cancelled_error_from_an_inner_await_reaches_every_waiter(name: str) -> None:
    """A CancelledError that comes out of the function because something it awaited was
    cancelled (not its own task) is the function's exception, like any other."""
    runs: List[int] = []

    async def compute() -> str:
        runs.append(1)
        if len(runs) > 1:
            return "a second run"
        inner = asyncio.ensure_future(asyncio.Event().wait())
        await until(waiting(name, 1))
        inner.cancel()
        await inner
        return "never"

    async def main() -> List[Any]:
        calls = (outcome(coopcache.cached_async(name, "k", compute)) for _ in range(2))
        return list(await asyncio.gather(*calls))

    got = asyncio.run(main())
    assert runs == [1]
    assert all(isinstance(g, asyncio.CancelledError) for g in got) and got[0] is got[1], got


def test_async_caller_giving_up_on_a_thread_leader_stops_alone(name: str) -> None:
    """A caller whose own wait is cut short (its timeout) stops alone: no exception reaches the
    others, and the computation goes on for them and is stored."""
    release = threading.Event()
    runs: List[int] = []

    def slow() -> str:
        runs.append(1)
        release.wait()
        return "v"

    got: List[Any] = []
    leader = in_thread(got, lambda: coopcache.cached(name, "k", slow))
    wait_until(lambda: coopcache.stats(name)["in_flight"] == 1, "the thread leads")

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await coopcache.cached_async(name, "k", slow, timeout=0.01)
        waiter = asyncio.ensure_future(coopcache.cached_async(name, "k", slow))
        await until(waiting(name, 2))
        release.set()
        assert await waiter == "v"

    asyncio.run(main())
    leader.join()
    assert got == ["v"] and runs == [1]
    assert coopcache.get(name, "k") == "v"
