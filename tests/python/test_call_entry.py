"""The decorated function's call entry (vectorcall, bindings-python/src/entry.rs): a hit with
positional arguments only is answered there; every other call (keyword arguments, ``key=``,
the first call, a miss, a key it cannot write, a refresh the hit takes) goes on in the
pyclass's path. Each must behave as before, and no call may leak or lose a reference."""

import functools
import pickle
import sys
import threading
from typing import Any, Dict, List, Tuple

import coopcache
import pytest
from conftest import fresh
from coopcache import _native

N = fresh()


@coopcache.cached(N)
def many(*args: Any, **kwargs: Any) -> List[Any]:
    """Doc of many."""
    many.calls += 1  # type: ignore[attr-defined]
    return [args, sorted(kwargs.items())]


many.calls = 0  # type: ignore[attr-defined]


def test_the_entry_writes_the_keys_of_the_pyclass_path() -> None:
    """invalidate() builds its key in the pyclass's path: it removes what the entry stored."""
    cases: List[Tuple[Tuple[Any, ...], Dict[str, Any]]] = [
        ((), {}),
        ((1,), {}),
        ((1, "a", None, 2.5, b"b", (1, [2])), {}),
        ((1,), {"b": 2}),
        ((), {"a": 1, "b": 2}),
    ]
    for args, kwargs in cases:
        first = many(*args, **kwargs)
        assert many(*args, **kwargs) is first, (args, kwargs)
        assert many.invalidate(*args, **kwargs) is True, (args, kwargs)  # type: ignore[attr-defined]
        assert many(*args, **kwargs) is not first, (args, kwargs)
    assert many(a=1, b=2) is many(b=2, a=1)
    assert many(1, b=2) is not many(1)
    assert many(*[7], **{}) is many(7), "f(*args, **{}) is a positional call"
    assert type(many).__call__(many, 7) is many(7), "tp_call finds the entry's value"
    assert many.calls == 2 * len(cases) + 1  # type: ignore[attr-defined]


def test_the_type_and_the_wrapper_attributes() -> None:
    assert type(many).__name__ == "CachedFunction" and type(many).__module__ == "coopcache._native"
    assert type(many) is _native.CachedFunction
    assert many.__name__ == "many" and many.__doc__ == "Doc of many."
    assert many.__wrapped__.__name__ == "many"  # type: ignore[attr-defined]
    many.note = "set"  # type: ignore[attr-defined]
    assert many.__dict__["note"] == "set"
    assert repr(many).startswith("<coopcache cached function ")
    with pytest.raises(TypeError, match="pickle"):
        pickle.dumps(many)
    with pytest.raises(TypeError):

        class Sub(type(many)):  # type: ignore[misc]
            pass


class Key(str):
    @coopcache.cached(N)
    def method(self, x: int) -> List[Any]:
        return [str(self), x]


def test_a_method_hits_through_the_bound_method() -> None:
    k = Key("k")
    assert k.method(1) is Key("k").method(1)
    assert Key.method(k, 1) is k.method(1)
    assert k.method(x=1) is k.method(x=1)


@coopcache.cached(N)
def fails(x: int) -> int:
    if x < 0:
        raise ValueError(f"negative: {x}")
    return x


def test_errors_of_the_function_and_of_the_key_reach_the_caller_after_hits() -> None:
    assert fails(1) == 1 and fails(1) == 1  # the cache is looked up: hits take the entry
    with pytest.raises(ValueError, match="negative: -1"):
        fails(-1)
    with pytest.raises(ValueError, match="negative: -1"):
        fails(-1)  # not stored
    with pytest.raises(TypeError, match=r"argument 0 of .*fails"):
        fails(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unexpected keyword"):
        fails(y=1)  # type: ignore[call-arg]
    assert fails(1) == 1


@coopcache.cached(N)
def echo(x: Any, y: Any = None) -> Tuple[Any, Any]:
    return (x, y)


def test_calls_keep_every_reference_count() -> None:
    arg, kw = "an argument " * 3, "a keyword value " * 3
    echo(arg)
    echo(arg, y=kw)
    value = echo(arg)
    before = (sys.getrefcount(arg), sys.getrefcount(kw), sys.getrefcount(value))
    for _ in range(1000):
        echo(arg)  # hits
        echo(arg, y=kw)  # keyword arguments: the pyclass's path
        try:
            echo([object()])  # a key it cannot write
        except TypeError:
            pass
    assert (sys.getrefcount(arg), sys.getrefcount(kw), sys.getrefcount(value)) == before


_ids: List[int] = []
R = f"entry-refresh-{id(_ids)}"
CLOCK = _native._manual_clock(R)
coopcache.configure(R, refresh_after=60)


@coopcache.cached(R)
def loaded(x: int) -> Tuple[int, int]:
    _ids.append(x)
    return (x, len(_ids))


def test_a_hit_that_takes_the_refresh_returns_the_old_value_and_starts_it() -> None:
    assert loaded(1) == (1, 1) and loaded(1) == (1, 1)
    CLOCK.advance(61)
    assert loaded(1) == (1, 1), "the stored value, at once"
    for t in threading.enumerate():
        if t.name == "coopcache-refresh":
            t.join()
    assert loaded(1) == (1, 2), "the refreshed value"
    s = coopcache.stats(R)
    assert (s["refreshes_started"], s["refreshes_succeeded"]) == (1, 1)


def test_a_decorated_function_as_a_method_of_functools_partial() -> None:
    p = functools.partial(echo, "p")
    assert p() is p() and p(y=1) is echo("p", y=1)
