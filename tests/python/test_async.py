import asyncio
import threading
from typing import Any, List

import coopcache
import pytest
from conftest import fresh
from helpers import until, wait_until, waiting


def test_asyncio_stampede_computes_once(name: str) -> None:
    calls = []
    n = 1000

    async def compute() -> dict:
        calls.append(1)
        await until(waiting(name, n - 1))
        return {"v": 1}

    async def main() -> List[Any]:
        return await asyncio.gather(*(coopcache.cached_async(name, "cold", compute) for _ in range(n)))

    results = asyncio.run(main())
    assert calls == [1]
    assert all(r is results[0] for r in results)
    assert coopcache.stats(name)["computations"] == 1


def test_fn_may_return_an_awaitable_or_a_plain_value(name: str) -> None:
    async def coro() -> int:
        return 5

    async def main() -> None:
        assert await coopcache.cached_async(name, "a", lambda: coro()) == 5
        assert await coopcache.cached_async(name, "b", lambda: 6) == 6
        assert await coopcache.cached_async(name, "c", lambda: coopcache.nocache(7)) == 7

    asyncio.run(main())
    assert coopcache.get(name, "c") is None


def test_async_errors_reach_every_waiter_and_are_not_stored(name: str) -> None:
    class MyError(Exception):
        pass

    async def compute() -> object:
        await until(waiting(name, 9))
        raise MyError("nope")

    async def main() -> List[Any]:
        return await asyncio.gather(
            *(coopcache.cached_async(name, "k", compute) for _ in range(10)), return_exceptions=True
        )

    results = asyncio.run(main())
    assert all(isinstance(r, MyError) for r in results)
    assert coopcache.stats(name)["errors"] == 1 and coopcache.get(name, "k") is None


def test_async_nocache(name: str) -> None:
    calls = []

    async def compute() -> object:
        calls.append(1)
        return coopcache.nocache([1])

    async def main() -> None:
        assert await coopcache.cached_async(name, "k", compute) == [1]
        assert await coopcache.cached_async(name, "k", compute) == [1]

    asyncio.run(main())
    assert len(calls) == 2


def test_async_recursion_is_an_error(name: str) -> None:
    async def inner() -> object:
        return await coopcache.cached_async(name, "k", inner)

    async def sync_inside() -> object:
        return coopcache.cached(name, "k2", lambda: 1)

    async def main() -> None:
        with pytest.raises(coopcache.CacheRecursionError):
            await coopcache.cached_async(name, "k", inner)
        with pytest.raises(RecursionError):
            await coopcache.cached_async(name, "k2", sync_inside)

    asyncio.run(main())


def test_a_sync_computation_whose_loop_asks_its_own_key_is_a_recursion_error(name: str) -> None:
    """A sync computation that runs an event loop whose task asks the computation's own key
    would wait for itself (the loop runs inside the computation): a recursion error, not a
    deadlock. Run on a thread so that a hang fails the test instead of stalling the suite."""

    async def fetch() -> int:
        return 1

    def compute() -> object:
        return asyncio.run(coopcache.cached_async(name, "k", fetch))

    outcome: List[BaseException] = []

    def call() -> None:
        try:
            coopcache.cached(name, "k", compute)
        except BaseException as e:  # noqa: BLE001 - the test inspects it
            outcome.append(e)

    t = threading.Thread(target=call, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "the computation waited for itself"
    assert len(outcome) == 1 and isinstance(outcome[0], coopcache.CacheRecursionError), outcome


def test_leader_task_cancelled_others_still_get_the_value(name: str) -> None:
    calls = []

    async def main() -> None:
        go = asyncio.Event()

        async def compute() -> str:
            calls.append(1)
            await go.wait()
            return "v"

        leader = asyncio.ensure_future(coopcache.cached_async(name, "k", compute))
        await until(lambda: coopcache.stats(name)["in_flight"] == 1)
        other = asyncio.ensure_future(coopcache.cached_async(name, "k", compute))
        await until(waiting(name, 1))
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        go.set()
        assert await other == "v"

    asyncio.run(main())
    assert calls == [1]
    assert coopcache.get(name, "k") == "v"


def test_computation_is_cancelled_when_nobody_waits(name: str) -> None:
    cancelled = []

    async def main() -> None:
        async def compute() -> str:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(1)
                raise
            return "never"

        t = asyncio.ensure_future(coopcache.cached_async(name, "k", compute))
        await until(lambda: coopcache.stats(name)["in_flight"] == 1)
        t.cancel()
        await until(lambda: cancelled == [1])
        await until(lambda: coopcache.stats(name)["in_flight"] == 0)

    asyncio.run(main())
    assert coopcache.get(name, "k") is None


def test_async_timeout_is_for_that_caller_only(name: str) -> None:
    async def main() -> None:
        go = asyncio.Event()

        async def compute() -> str:
            await go.wait()
            return "v"

        leader = asyncio.ensure_future(coopcache.cached_async(name, "k", compute))
        await until(lambda: coopcache.stats(name)["in_flight"] == 1)
        with pytest.raises(TimeoutError):
            await coopcache.cached_async(name, "k", compute, timeout=0.05)
        go.set()
        assert await leader == "v"

    asyncio.run(main())
    assert coopcache.get(name, "k") == "v"


def test_leader_timeout_does_not_cancel_the_computation(name: str) -> None:
    async def main() -> None:
        go = asyncio.Event()

        async def compute() -> str:
            await go.wait()
            return "v"

        with pytest.raises(TimeoutError):
            await coopcache.cached_async(name, "k", compute, timeout=0.05)
        # Nobody waits any more: the detached computation is cancelled, nothing stored.
        await until(lambda: coopcache.stats(name)["in_flight"] == 0)

    asyncio.run(main())


def test_two_event_loops_and_a_thread_share_one_flight(name: str) -> None:
    calls = []
    release = threading.Event()
    results: List[Any] = []

    async def compute() -> list:
        calls.append(1)
        while not release.is_set():
            await asyncio.sleep(0.001)
        return ["shared"]

    def loop_thread() -> None:
        results.append(asyncio.run(coopcache.cached_async(name, "k", compute)))

    t1 = threading.Thread(target=loop_thread)
    t1.start()
    wait_until(lambda: coopcache.stats(name)["in_flight"] == 1, "loop 1 leads")
    t2 = threading.Thread(target=loop_thread)
    t3 = threading.Thread(target=lambda: results.append(coopcache.cached(name, "k", lambda: ["sync"])))
    t2.start()
    t3.start()
    wait_until(waiting(name, 2), "loop 2 and the thread wait")
    release.set()
    for t in (t1, t2, t3):
        t.join()
    assert calls == [1]
    assert len(results) == 3 and all(r is results[0] for r in results)


def test_async_waiter_on_a_thread_leader_does_not_block_the_loop(name: str) -> None:
    release = threading.Event()

    def slow() -> str:
        release.wait()
        return "v"

    leader = threading.Thread(target=lambda: coopcache.cached(name, "k", slow))
    leader.start()
    wait_until(lambda: coopcache.stats(name)["in_flight"] == 1, "the thread leads")

    async def main() -> None:
        ticks = [0]

        async def ticker() -> None:
            while True:
                ticks[0] += 1
                await asyncio.sleep(0)

        t = asyncio.ensure_future(ticker())
        w = asyncio.ensure_future(coopcache.cached_async(name, "k", lambda: "async"))
        await until(lambda: ticks[0] > 100 and coopcache.stats(name)["coalesced"] == 1)
        release.set()
        assert await w == "v"
        t.cancel()

    asyncio.run(main())
    leader.join()


def test_async_max_concurrency() -> None:
    n = fresh(max_concurrency=2)
    running, peak = [0], [0]

    async def compute(i: int) -> int:
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        await asyncio.sleep(0.001)
        running[0] -= 1
        return i

    async def main() -> List[int]:
        calls = (coopcache.cached_async(n, i, lambda i=i: compute(i)) for i in range(20))
        return await asyncio.gather(*calls)

    assert asyncio.run(main()) == list(range(20))
    assert peak[0] == 2


def test_cache_handle_async_and_tags(name: str) -> None:
    async def main() -> None:
        v = await coopcache.cached_async(name, "k", lambda: [1], tags=["t"])
        assert coopcache.get(name, "k") is v
        assert coopcache.invalidate_tag(name, "t") == 1

    asyncio.run(main())


def test_async_unknown_cache() -> None:
    async def main() -> None:
        with pytest.raises(coopcache.UnknownCacheError):
            await coopcache.cached_async("never-configured-async", "k", lambda: 1)

    asyncio.run(main())


def test_closing_loop_hands_the_computation_to_a_waiting_thread(name: str) -> None:
    go = threading.Event()
    got: List[Any] = []

    async def compute() -> str:
        await asyncio.Event().wait()  # never finishes: its loop closes first
        return "never"

    async def loop_main() -> None:
        t = asyncio.ensure_future(coopcache.cached_async(name, "k", compute))
        while not go.is_set():
            await asyncio.sleep(0.001)
        t.cancel()
        # asyncio.run now cancels the detached computation as the loop closes.

    lt = threading.Thread(target=lambda: asyncio.run(loop_main()))
    lt.start()
    wait_until(lambda: coopcache.stats(name)["in_flight"] == 1, "the loop leads")
    st = threading.Thread(target=lambda: got.append(coopcache.cached(name, "k", lambda: "sync")))
    st.start()
    wait_until(waiting(name, 1), "the thread waits")
    go.set()
    lt.join()
    st.join()
    assert got == ["sync"]
    assert coopcache.get(name, "k") == "sync"


def test_tags_as_a_single_str_is_a_type_error(name: str) -> None:
    async def main() -> None:
        with pytest.raises(TypeError):
            await coopcache.cached_async(name, "k", lambda: 1, tags="t")

    asyncio.run(main())


def test_a_computation_cancelled_before_its_task_started_hands_the_key_over(name: str) -> None:
    """The loop stops right after the caller's first step made the computation's task, and
    closes with that task never started: a waiting thread takes the key over."""
    loop = asyncio.new_event_loop()
    caller = loop.create_task(coopcache.cached_async(name, "k", lambda: "async"))
    loop.call_soon(loop.stop)  # one iteration: the caller's step, which creates the task
    loop.run_forever()
    assert coopcache.stats(name)["in_flight"] == 1
    got: List[Any] = []
    st = threading.Thread(target=lambda: got.append(coopcache.cached(name, "k", lambda: "sync")))
    st.start()
    wait_until(waiting(name, 1), "the thread waits")
    tasks = asyncio.all_tasks(loop)
    assert len(tasks) == 2 and caller in tasks
    for t in tasks:
        t.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    loop.close()
    st.join(20)
    assert got == ["sync"], "the thread computed the key"
