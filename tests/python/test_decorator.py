import asyncio
import hashlib
from typing import Any, List

import coopcache
import pytest
from conftest import fresh

N = fresh()


@coopcache.cached(N)
def double(x: Any, *, scale: int = 1) -> Any:
    double.calls += 1  # type: ignore[attr-defined]
    return [x, x, scale]


double.calls = 0  # type: ignore[attr-defined]


def test_decorated_sync_function_caches_by_arguments() -> None:
    a = double(2)
    assert double(2) is a
    assert double(2.0) is a  # 2 == 2.0: one key
    assert double(3) is not a
    assert double.calls == 2  # type: ignore[attr-defined]
    assert double.__name__ == "double" and double.__wrapped__ is not None  # type: ignore[attr-defined]


# The default key names a function by its module and qualified name, so the functions of these
# tests are module-level (a nested one needs key=, see test_pitfalls.py).


@coopcache.cached(N)
def with_kwargs(a: int, b: int = 0, c: int = 0) -> tuple:
    return (a, b, c, object())


def test_kwargs_are_part_of_the_key_in_any_order() -> None:
    f = with_kwargs
    assert f(1, b=2, c=3) is f(1, c=3, b=2)
    assert f(1, b=2, c=3) is not f(1, b=3, c=2)


@coopcache.cached(N)
def one(x: int) -> str:
    return "one"


@coopcache.cached(N)
def two(x: int) -> str:
    return "two"


def test_two_functions_with_the_same_arguments_do_not_collide() -> None:
    assert (one(1), two(1)) == ("one", "two")


def test_custom_key_and_weigher() -> None:
    n = fresh()

    class User:
        def __init__(self, uid: int) -> None:
            self.uid = uid

    @coopcache.cached(n, key=lambda u: ("user", u.uid), weigher=lambda v: 10)
    def load(u: User) -> dict:
        return {"id": u.uid}

    v = load(User(4))
    assert load(User(4)) is v
    assert coopcache.get(n, ("user", 4)) is v  # key= is the key, as written
    assert coopcache.stats(n)["bytes_used"] < 100


@coopcache.cached(N)
def takes_object(x: object) -> int:
    return 1


def test_unsupported_argument_type_points_at_key() -> None:
    with pytest.raises(TypeError, match="key="):
        takes_object(object())


class Repo:
    @coopcache.cached(N)
    def method(self, x: int) -> list:
        return [x]


class HashableId(str):
    """A str subclass is a supported key type (it is a str)."""

    @coopcache.cached(N)
    def method(self, x: int) -> list:
        return [str(self), x]


def test_bound_method_with_unsupported_instance_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="key="):
        Repo().method(1)


def test_bound_method_with_supported_instance() -> None:
    a = HashableId("a")
    assert a.method(1) is HashableId("a").method(1)
    assert a.method(1) is not HashableId("b").method(1)


def test_method_with_key_skipping_self() -> None:
    class Svc:
        @coopcache.cached(N, key=lambda self, x: ("svc", x))
        def get(self, x: int) -> list:
            return [x]

    assert Svc().get(1) is Svc().get(1)
    assert Svc.get.cache_name == N  # type: ignore[attr-defined]


@coopcache.cached(N)
def listed(x: int) -> list:
    return [x]


def test_decorator_invalidate_and_cache_key() -> None:
    f = listed
    v = f(1)
    assert f.invalidate(1) is True  # type: ignore[attr-defined]
    assert f(1) is not v
    assert isinstance(f.cache_key(1), bytes)  # type: ignore[attr-defined]


@coopcache.cached("configured-later")
def configured_later(x: int) -> int:
    return x


def test_decorator_before_configure_resolves_at_call_time() -> None:
    f = configured_later
    with pytest.raises(coopcache.UnknownCacheError):
        f(1)
    coopcache.configure("configured-later")
    assert f(1) == 1


fetched: List[int] = []


@coopcache.cached(N)
async def fetch(x: int) -> list:
    fetched.append(x)
    await asyncio.sleep(0)
    return [x]


def test_async_decorator_caches() -> None:
    calls = fetched

    async def main() -> None:
        a = await fetch(1)
        assert await fetch(1) is a
        assert await fetch(x=1) is not None

    asyncio.run(main())
    assert calls == [1, 1]


@coopcache.cached(N)
def keyword_only(x: int, *, y: int = 0) -> int:
    return x


def test_async_and_sync_default_keys_encode_alike() -> None:
    from coopcache._decorator import _default_key

    f = keyword_only
    fid = coopcache.function_id(f"{f.__module__}.{f.__qualname__}")
    assert f.cache_key(1, y=2) == coopcache.key_bytes(_default_key(fid, (1,), {"y": 2}))  # type: ignore
    assert f.cache_key(1) == coopcache.key_bytes(_default_key(fid, (1,), {}))  # type: ignore


def test_the_default_key_names_the_function_by_an_id_that_keeps_it_inline() -> None:
    """The default key is (the function's id, args): 8 bytes that every process makes from the
    qualified name, so a call with one int argument makes a 23-byte key, which the core holds
    without a heap block per entry (the name itself made a 37-byte key here)."""
    f = keyword_only
    name = f"{f.__module__}.{f.__qualname__}"
    assert coopcache.function_id(name) == hashlib.sha256(name.encode()).digest()[:8]
    assert f.cache_key(7) == coopcache.key_bytes((coopcache.function_id(name), (7,)))  # type: ignore
    assert len(f.cache_key(7)) == 23  # type: ignore


def test_call_form_without_fn_is_an_error() -> None:
    with pytest.raises(TypeError):
        coopcache.cached(N, "not-callable")
