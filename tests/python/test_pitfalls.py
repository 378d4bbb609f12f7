"""The first hour's mistakes (issue 14): each gets a clear answer, never a wrong value or a hang."""

import asyncio
from typing import Any, AsyncIterator, Callable, Iterator, List

import coopcache
import pytest
from conftest import fresh

N = fresh()

# --- Default keys name one function, or the decorator refuses it --------------------------------


def test_a_lambda_without_key_is_refused() -> None:
    with pytest.raises(TypeError, match=r"<lambda>.*key="):
        coopcache.cached(N)(lambda x: 2 * x)


def test_two_lambdas_with_key_do_not_collide() -> None:
    double = coopcache.cached(N, key=lambda x: ("double", x))(lambda x: 2 * x)
    triple = coopcache.cached(N, key=lambda x: ("triple", x))(lambda x: 3 * x)
    assert (double(5), triple(5)) == (10, 15)


def _factory(n: int) -> Callable[[int], int]:
    def times(x: int) -> int:
        return n * x

    return times


def test_a_closure_without_key_is_refused() -> None:
    with pytest.raises(TypeError, match=r"_factory.<locals>.times.*key="):
        coopcache.cached(N)(_factory(2))


def test_a_nested_async_function_without_key_is_refused() -> None:
    async def fetch(x: int) -> int:
        return x

    with pytest.raises(TypeError, match=r"<locals>.*key="):
        coopcache.cached(N)(fetch)


def test_two_functions_with_one_qualified_name_in_one_cache_are_refused() -> None:
    first = coopcache.cached(N)(_renamed(lambda x: 2 * x, "same_name"))
    with pytest.raises(TypeError, match=r"same_name.*already.*key="):
        coopcache.cached(N)(_renamed(lambda x: 3 * x, "same_name"))
    assert first(1) == 2
    # The same function object again is fine (a second wrapper shares its entries).
    assert coopcache.cached(N)(first.__wrapped__)(1) == 2  # type: ignore[attr-defined]
    # In another cache the name is free.
    assert coopcache.cached(fresh())(_renamed(lambda x: 3 * x, "same_name"))(1) == 3


def _renamed(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    """A function under a module-level qualified name, as if it were defined with `def`."""
    fn.__name__ = fn.__qualname__ = name
    return fn


class Counter:
    """Methods: `self` is the first argument, so it is part of the key like any other."""

    def __init__(self, n: int) -> None:
        self.n = n

    @coopcache.cached(N, key=lambda self, x: ("counter", self.n, x))
    def times(self, x: int) -> int:
        return self.n * x


def test_a_method_keys_its_instance_through_key() -> None:
    assert (Counter(2).times(5), Counter(3).times(5)) == (10, 15)


# --- Generator functions are refused ---------------------------------------------------------------


def _numbers(n: int) -> Iterator[int]:
    yield from range(n)


async def _anumbers(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


@pytest.mark.parametrize("fn", [_numbers, _anumbers])
def test_a_generator_function_is_refused_at_decoration(fn: Callable[..., Any]) -> None:
    with pytest.raises(TypeError, match="generator"):
        coopcache.cached(N)(fn)
    with pytest.raises(TypeError, match="generator"):
        coopcache.cached(N, key=lambda n: n)(fn)


def test_a_generator_returned_to_the_call_form_is_an_error_not_a_value() -> None:
    with pytest.raises(TypeError, match="generator"):
        coopcache.cached(N, "gen", lambda: _numbers(3))
    assert coopcache.get(N, "gen") is None


def test_an_async_generator_returned_to_cached_async_is_an_error_not_a_value() -> None:
    async def main() -> None:
        with pytest.raises(TypeError, match="generator"):
            await coopcache.cached_async(N, "agen", lambda: _anumbers(3))

    asyncio.run(main())
    assert coopcache.get(N, "agen") is None


def test_lists_made_from_generators_are_fine() -> None:
    runs: List[int] = []

    @coopcache.cached(N, key=lambda n: ("listed", n))
    def listed(n: int) -> List[int]:
        runs.append(n)
        return list(_numbers(n))

    assert listed(3) == listed(3) == [0, 1, 2] and runs == [3]


# --- A sync call inside the event loop, for a key a task of that loop computes -------------------


def _loop_computes_k_while(name: str, blocking_call: Callable[[], Any]) -> None:
    """A task of the running loop computes key "k" (suspended); meanwhile code on the loop's
    thread makes `blocking_call`: it would block the loop the computation needs."""

    async def main() -> None:
        started, release = asyncio.Event(), asyncio.Event()

        async def slow() -> str:
            started.set()
            await release.wait()
            return "async"

        task = asyncio.ensure_future(coopcache.cached_async(name, "k", slow))
        await started.wait()
        try:
            with pytest.raises(coopcache.CacheRecursionError, match="event loop"):
                blocking_call()
        finally:
            release.set()
        assert await task == "async"

    asyncio.run(main())


def test_a_sync_call_on_the_loop_for_a_key_its_task_computes_raises() -> None:
    n = fresh()
    # A timeout only bounds the failure before the fix (it would block the loop forever).
    _loop_computes_k_while(n, lambda: coopcache.cached(n, "k", lambda: "sync", timeout=5))
    assert coopcache.get(n, "k") == "async"


def test_a_sync_decorated_function_on_the_loop_for_a_key_its_task_computes_raises() -> None:
    n = fresh()
    load = coopcache.cached(n, key=lambda: "k", timeout=5)(lambda: "sync")
    _loop_computes_k_while(n, load)


def test_a_sync_call_on_the_loop_for_a_key_another_thread_computes_waits() -> None:
    n = fresh()

    async def main() -> str:
        return coopcache.cached(n, "other", lambda: "sync")  # blocks the loop briefly, no cycle

    assert asyncio.run(main()) == "sync"
