"""Batches (``cached_many``): one loader call for the keys nobody has, each of them a flight
that single calls and other batches join. Ordering by events and counters, never sleeps."""

import asyncio
import threading
from collections import Counter
from typing import Dict, List

import coopcache
import pytest
from helpers import until, wait_until


def test_three_overlapping_batches_and_ten_single_calls_load_each_key_once(name: str) -> None:
    loads: Counter[int] = Counter()
    lock = threading.Lock()
    gate = threading.Event()

    def loader(missing: List[int]) -> Dict[int, str]:
        with lock:
            loads.update(missing)
            first = len(loads) == len(missing)
        if first:
            assert gate.wait(20)  # the first batch holds its keys while the others join them
        return {k: f"v{k}" for k in missing}

    batches = [list(range(0, 6)), list(range(3, 10)), list(range(0, 10, 2))]
    results: Dict[str, List[str]] = {}

    def batch(i: int) -> None:
        results[f"b{i}"] = coopcache.cached_many(name, batches[i], loader)

    def single(k: int) -> None:
        results[f"s{k}"] = [coopcache.cached(name, k, lambda: loader([k])[k])]

    first = threading.Thread(target=batch, args=(0,))
    first.start()
    wait_until(lambda: coopcache.stats(name)["in_flight"] == 6, "the first batch leads its 6 keys")
    others = [threading.Thread(target=batch, args=(i,)) for i in (1, 2)]
    others += [threading.Thread(target=single, args=(k,)) for k in range(10)]
    for t in others:
        t.start()
    wait_until(lambda: coopcache.stats(name)["coalesced"] >= 6, "the others wait for its keys")
    gate.set()
    for t in [first, *others]:
        t.join()
    assert loads == Counter(range(10)), "every key loaded exactly once"
    for i, keys in enumerate(batches):
        assert results[f"b{i}"] == [f"v{k}" for k in keys]
    for k in range(10):
        assert results[f"s{k}"] == [f"v{k}"]


def test_a_key_the_loader_leaves_out_is_an_error_for_that_key(name: str) -> None:
    with pytest.raises(RuntimeError, match="returned no value for key 2"):
        coopcache.cached_many(name, [1, 2], lambda missing: {1: "one"})
    assert coopcache.get(name, 1) == "one" and coopcache.get(name, 2) is None
    assert coopcache.cached_many(name, [1, 2], lambda missing: {k: str(k) for k in missing}) == ["one", "2"]


class Down(Exception):
    pass


def test_the_loader_s_exception_reaches_every_caller_of_its_keys(name: str) -> None:
    started, go = threading.Event(), threading.Event()

    def loader(missing: List[int]) -> Dict[int, int]:
        started.set()
        assert go.wait(20)
        raise Down("backend down")

    errors: List[BaseException] = []

    def single() -> None:
        try:
            coopcache.cached(name, 2, lambda: 0)
        except Down as e:
            errors.append(e)

    def batch() -> None:
        try:
            coopcache.cached_many(name, [1, 2, 3], loader)
        except Down as e:
            errors.append(e)

    lead = threading.Thread(target=batch)
    lead.start()
    assert started.wait(20)
    waiter = threading.Thread(target=single)
    waiter.start()
    wait_until(lambda: coopcache.stats(name)["coalesced"] >= 1, "the single call waits for the batch")
    go.set()
    lead.join()
    waiter.join()
    assert len(errors) == 2 and errors[0] is errors[1], "the very exception, for both"
    assert coopcache.stats(name)["entries"] == 0


def test_bad_arguments(name: str) -> None:
    with pytest.raises(TypeError, match="must return a mapping"):
        coopcache.cached_many(name, [1], lambda missing: [1])
    with pytest.raises(TypeError):
        coopcache.cached_many(name, 5, lambda missing: {})  # type: ignore[arg-type]


coopcache.configure("test-many-decorated")
asked: List[List[int]] = []


@coopcache.cached_many("test-many-decorated")
def load_users(ids: List[int]) -> Dict[int, str]:
    asked.append(ids)
    return {i: f"user {i}" for i in ids}


def test_the_decorator_form_takes_a_list_of_ids() -> None:
    assert load_users([1, 2]) == ["user 1", "user 2"]
    assert load_users([2, 3, 1]) == ["user 2", "user 3", "user 1"]
    assert asked == [[1, 2], [3]], "one call for the ids nobody has"
    assert load_users.__name__ == "load_users"
    fid = coopcache.function_id("test_many.load_users")
    assert coopcache.get("test-many-decorated", (fid, 3)) == "user 3"


def test_an_async_loader(name: str) -> None:
    async def loader(missing: List[int]) -> Dict[int, str]:
        await asyncio.sleep(0)
        return {k: f"v{k}" for k in missing}

    async def main() -> None:
        assert await coopcache.cached_many_async(name, [1, 2], loader) == ["v1", "v2"]
        # A sync loader works in the async form too; stored keys are hits.
        assert await coopcache.cached_many_async(name, [2, 3], lambda m: {k: k for k in m}) == ["v2", 3]

    asyncio.run(main())


def test_async_three_overlapping_batches_and_ten_single_calls_load_each_key_once(name: str) -> None:
    loads: Counter[int] = Counter()
    batches = [list(range(0, 6)), list(range(3, 10)), list(range(0, 10, 2))]

    async def main() -> List[List[str]]:
        gate = asyncio.Event()

        async def loader(missing: List[int]) -> Dict[int, str]:
            loads.update(missing)
            await gate.wait()  # the first batch holds its keys while the others join them
            return {k: f"v{k}" for k in missing}

        async def one(k: int) -> str:
            return (await loader([k]))[k]

        first = asyncio.ensure_future(coopcache.cached_many_async(name, batches[0], loader))
        await until(lambda: coopcache.stats(name)["in_flight"] == 6)
        calls = [coopcache.cached_many_async(name, b, loader) for b in batches[1:]]
        calls += [coopcache.cached_async(name, k, lambda k=k: one(k)) for k in range(10)]
        rest = asyncio.ensure_future(asyncio.gather(*calls))
        # Keys 6..9 led by the second batch; 3 + 5 keys of batches and 10 single calls wait.
        await until(lambda: coopcache.stats(name)["in_flight"] == 10)
        await until(lambda: coopcache.stats(name)["coalesced"] >= 18)
        gate.set()
        return [await first, *[r if isinstance(r, list) else [r] for r in await rest]]

    results = asyncio.run(main())
    assert loads == Counter(range(10)), "every key loaded exactly once"
    for i, keys in enumerate(batches):
        assert results[i] == [f"v{k}" for k in keys]
    assert results[3:] == [[f"v{k}"] for k in range(10)]


def test_an_async_loader_s_exception_reaches_every_waiter_of_its_keys(name: str) -> None:
    async def main() -> List[BaseException]:
        go = asyncio.Event()

        async def loader(missing: List[int]) -> Dict[int, int]:
            await go.wait()
            raise Down("backend down")

        batch = asyncio.ensure_future(coopcache.cached_many_async(name, [1, 2, 3], loader))
        await until(lambda: coopcache.stats(name)["in_flight"] == 3)
        single = asyncio.ensure_future(coopcache.cached_async(name, 2, lambda: 0))
        other = asyncio.ensure_future(coopcache.cached_many_async(name, [3, 4], lambda m: {4: 4}))
        await until(lambda: coopcache.stats(name)["coalesced"] >= 2)
        go.set()
        got = await asyncio.gather(batch, single, other, return_exceptions=True)
        return list(got)  # type: ignore[arg-type]

    errors = asyncio.run(main())
    assert all(isinstance(e, Down) for e in errors), errors
    assert errors[0] is errors[1] is errors[2], "the very exception, for every waiter"
    assert [coopcache.get(name, k) for k in (1, 2, 3, 4)] == [None, None, None, 4]


def test_an_async_loader_asking_its_own_key_after_an_await_is_a_recursion_error(name: str) -> None:
    async def loader(missing: List[int]) -> Dict[int, object]:
        await asyncio.sleep(0)
        return {k: await coopcache.cached_async(name, k, lambda: 0) for k in missing}

    async def main() -> None:
        with pytest.raises(coopcache.CacheRecursionError):
            # A hang guard only: the error comes at once.
            await asyncio.wait_for(coopcache.cached_many_async(name, [1, 2], loader), 20)

    asyncio.run(main())


coopcache.configure("test-many-decorated-async")
asked_async: List[List[int]] = []


@coopcache.cached_many("test-many-decorated-async")
async def load_users_async(ids: List[int]) -> Dict[int, str]:
    asked_async.append(ids)
    await asyncio.sleep(0)
    return {i: f"user {i}" for i in ids}


def test_the_decorator_form_of_an_async_def_is_async() -> None:
    async def main() -> None:
        assert await load_users_async([1, 2]) == ["user 1", "user 2"]
        assert await load_users_async([2, 3]) == ["user 2", "user 3"]

    asyncio.run(main())
    assert asked_async == [[1, 2], [3]]
    assert load_users_async.__name__ == "load_users_async"
