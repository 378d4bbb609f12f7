import gc
import logging
import threading
import weakref

import coopcache
import pytest
from conftest import fresh
from helpers import wait_until


class Obj:
    """A value that can be weakly referenced."""


def test_call_form_hit_returns_the_same_object(name: str) -> None:
    calls = []
    v1 = coopcache.cached(name, "k", lambda: calls.append(1) or {"a": [1, 2]})
    v2 = coopcache.cached(name, "k", lambda: calls.append(1) or {"a": [1, 2]})
    assert v1 is v2
    assert calls == [1]
    assert coopcache.get(name, "k") is v1
    s = coopcache.stats(name)
    assert (s["hits"], s["misses"], s["computations"], s["entries"]) == (2, 1, 1, 1)


def test_get_miss_is_none_and_default(name: str) -> None:
    assert coopcache.get(name, "nothing") is None
    assert coopcache.configure(name).get("nothing", 7) == 7


def test_cache_handle_has_the_same_methods() -> None:
    c = coopcache.configure(fresh())
    assert c.cached(1, lambda: "one") == "one"
    assert c.get(1) == "one"
    assert c.get(1.0) == "one" and c.get(True) == "one"
    assert c.invalidate(1) is True
    assert c.invalidate(1) is False
    c.cached(("a", 1), lambda: 1, tags=["t"])
    c.cached(("a", 2), lambda: 2, tags=["t", "u"])
    c.cached(("a", 3), lambda: 3)
    assert c.invalidate_tag("t") == 2
    assert c.stats()["entries"] == 1
    c.clear()
    assert c.stats()["entries"] == 0
    assert coopcache.cache(c.name).stats()["evicted_invalidated"] == 4
    assert c.stats()["evictions"]["invalidated"] == 4


def test_stats_fields(name: str) -> None:
    s = coopcache.stats(name)
    for f in (
        "hits",
        "misses",
        "computations",
        "coalesced",
        "errors",
        "nocache",
        "rejected_full",
        "evicted_idle",
        "evicted_lru",
        "evicted_invalidated",
        "entries",
        "bytes_used",
        "memory_limit",
        "in_flight",
        "evictions",
    ):
        assert f in s
    assert s["memory_limit"] == 50 * 1024 * 1024


def test_nocache_returns_but_does_not_store(name: str) -> None:
    calls = []

    def fn() -> object:
        calls.append(1)
        return coopcache.nocache("v")

    assert coopcache.cached(name, "k", fn) == "v"
    assert coopcache.cached(name, "k", fn) == "v"
    assert len(calls) == 2
    assert coopcache.get(name, "k") is None
    assert coopcache.stats(name)["nocache"] == 2


def test_error_is_raised_and_not_stored(name: str) -> None:
    calls = []

    def boom() -> object:
        calls.append(1)
        raise LookupError("no such user")

    for _ in range(2):
        with pytest.raises(LookupError, match="no such user"):
            coopcache.cached(name, "k", boom)
    assert len(calls) == 2
    assert coopcache.stats(name)["errors"] == 2
    assert coopcache.cached(name, "k", lambda: 5) == 5


def test_unknown_cache_lists_configured_names() -> None:
    fresh()
    with pytest.raises(coopcache.UnknownCacheError) as e:
        coopcache.cached("never-configured", "k", lambda: 1)
    assert isinstance(e.value, KeyError)
    assert "never-configured" in str(e.value) and "test-" in str(e.value)
    for call in (
        lambda: coopcache.get("nope", 1),
        lambda: coopcache.stats("nope"),
        lambda: coopcache.clear("nope"),
        lambda: coopcache.invalidate("nope", 1),
        lambda: coopcache.invalidate_tag("nope", "t"),
        lambda: coopcache.cache("nope"),
    ):
        with pytest.raises(coopcache.UnknownCacheError):
            call()


@pytest.mark.parametrize(
    "settings",
    [
        {"memory_limit": -1},
        {"memory_limit": 1.5},
        {"memory_limit": -0.5},
        {"memory_limit": 10**30},
        {"cache_duration": -1},
        {"cache_duration": float("nan")},
        {"when_full": "drop"},
        {"max_concurrency": 0},
        {"max_concurrency": -3},
    ],
)
def test_bad_settings_are_value_errors(settings: dict) -> None:
    with pytest.raises(ValueError):
        coopcache.configure("bad-settings", **settings)
    assert "bad-settings" not in coopcache.names()


@pytest.mark.parametrize(
    "settings",
    [
        {"memory_limit": "big"},
        {"cache_duration": "1s"},
        {"max_concurrency": 1.5},
        {"memory_limit": True},
    ],
)
def test_settings_of_the_wrong_type_are_type_errors(settings: dict) -> None:
    with pytest.raises(TypeError):
        coopcache.configure("bad-settings", **settings)


def test_fraction_memory_limit() -> None:
    s = coopcache.configure(fresh(memory_limit=0.01)).stats()
    assert s["memory_limit"] > 0


def test_configure_updates_in_place(name: str) -> None:
    c = coopcache.cached(name, "k", lambda: "v")
    coopcache.configure(name, cache_duration=60, when_full="evict", max_concurrency=2)
    assert coopcache.get(name, "k") is c
    coopcache.configure(name, memory_limit=0)
    assert coopcache.stats(name)["memory_limit"] == 0
    assert coopcache.stats(name)["bytes_used"] == 0


def test_reconfiguring_keeps_the_options_left_out(name: str) -> None:
    coopcache.configure(name, cache_duration=60, when_full="evict", max_concurrency=2)
    coopcache.configure(name, memory_limit=1000)
    # The limit changed; the duration, mode and concurrency limit stayed.
    assert coopcache.stats(name)["memory_limit"] == 1000
    for k in range(50):
        coopcache.cached(name, k, lambda: "x" * 100)
    assert coopcache.stats(name)["evicted_lru"] > 0, "still in evict mode"
    coopcache.configure(name, max_concurrency=None)  # removes the limit
    with pytest.raises(TypeError, match="unexpected option 'memory_limt'"):
        coopcache.configure(name, memory_limt=5)


def test_memory_limit_zero_stores_nothing() -> None:
    n = fresh(memory_limit=0)
    calls = []
    for _ in range(3):
        assert coopcache.cached(n, "k", lambda: calls.append(1) or "v") == "v"
    assert len(calls) == 3
    s = coopcache.stats(n)
    assert s["entries"] == 0 and s["bytes_used"] == 0 and s["rejected_full"] == 3


def test_reject_mode_keeps_old_entries_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    n = fresh(memory_limit=2000, when_full="reject")
    caplog.set_level(logging.DEBUG, logger="coopcache")
    i = 0
    while coopcache.stats(n)["rejected_full"] == 0:
        coopcache.cached(n, i, lambda: b"x" * 200)
        i += 1
    stored = coopcache.stats(n)["entries"]
    assert stored >= 1
    for j in range(i, i + 5):
        assert coopcache.cached(n, j, lambda: b"y" * 200) == b"y" * 200
    s = coopcache.stats(n)
    assert s["entries"] == stored and s["bytes_used"] <= 2000 and s["rejected_full"] == 6
    assert coopcache.get(n, 0) == b"x" * 200
    full = [
        r
        for r in caplog.records
        if r.name == "coopcache" and "full" in r.getMessage() and n in r.getMessage()
    ]
    assert len(full) == 1 and full[0].levelno == logging.WARNING


def test_evict_mode_drops_least_recently_used(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="coopcache")
    n = fresh(memory_limit=3000, when_full="evict")
    for i in range(100):
        assert coopcache.cached(n, i, lambda: b"x" * 200) == b"x" * 200
        assert coopcache.stats(n)["bytes_used"] <= 3000
    s = coopcache.stats(n)
    assert s["evicted_lru"] > 0 and s["rejected_full"] == 0
    assert coopcache.get(n, 99) is not None
    assert any(r.levelno == logging.DEBUG and "lru" in r.getMessage() for r in caplog.records)


def test_weigher_overrides_the_estimate() -> None:
    n = fresh(memory_limit=10_000, when_full="reject")
    coopcache.cached(n, "small", lambda: b"x", weigher=lambda v: 20_000)
    assert coopcache.stats(n)["entries"] == 0
    coopcache.cached(n, "big", lambda: b"x" * 5000, weigher=lambda v: 1)
    assert coopcache.stats(n)["entries"] == 1
    assert coopcache.stats(n)["bytes_used"] < 200


def test_estimate_grows_with_the_value() -> None:
    est = coopcache._native.estimate_size
    assert est(b"x" * 1000) > 1000
    assert est("x" * 1000) > 1000
    assert est([b"x" * 100] * 10) > 1000
    assert est({"a": "x" * 500, "b": ["y" * 500]}) > 1000
    assert est({1, 2, 3}) > est(set())
    deep: list = []
    for _ in range(10_000):
        deep = [deep]
    assert est(deep) > 0  # bounded, no RecursionError


def test_idle_expiry() -> None:
    n = fresh(cache_duration=0.2)
    coopcache.cached(n, "k", lambda: "v")
    # (polling with get() would keep the entry alive: a read is activity)
    wait_until(lambda: coopcache.stats(n)["entries"] == 0, "the sweeper reclaims the idle entry")
    assert coopcache.get(n, "k") is None
    assert coopcache.stats(n)["evicted_idle"] == 1
    calls = []
    assert coopcache.cached(n, "k", lambda: calls.append(1) or "w") == "w"
    assert calls == [1]


def test_values_are_released_after_invalidate_and_clear(name: str) -> None:
    refs = []
    for i in range(3):
        o = Obj()
        refs.append(weakref.ref(o))
        coopcache.cached(name, i, lambda o=o: o)
        del o
    gc.collect()
    assert all(r() is not None for r in refs)
    coopcache.invalidate(name, 0)
    gc.collect()
    assert refs[0]() is None and refs[1]() is not None
    coopcache.clear(name)
    gc.collect()
    assert all(r() is None for r in refs)


def test_values_are_released_after_idle_expiry_on_the_sweeper_thread() -> None:
    n = fresh(cache_duration=0.1)
    o = Obj()
    ref = weakref.ref(o)
    coopcache.cached(n, "k", lambda o=o: o)
    del o
    wait_until(lambda: coopcache.stats(n)["entries"] == 0, "the sweeper drops the entry")

    def released() -> bool:
        coopcache.stats(n)  # any call into the module releases objects dropped without the GIL
        gc.collect()
        return ref() is None

    wait_until(released, "the value is released")


def test_tags_must_be_strings(name: str) -> None:
    with pytest.raises(TypeError):
        coopcache.cached(name, "k", lambda: 1, tags="user:1")
    with pytest.raises(TypeError):
        coopcache.cached(name, "k", lambda: 1, tags=[1])


def test_invalidate_during_computation_is_not_stored(name: str) -> None:
    started, go = threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        go.wait()
        return "v"

    t = threading.Thread(target=lambda: coopcache.cached(name, "k", slow))
    t.start()
    started.wait()
    coopcache.invalidate(name, "k")
    go.set()
    t.join()
    assert coopcache.get(name, "k") is None


def test_cache_handle_decorator_and_async() -> None:
    import asyncio

    c = coopcache.configure(fresh())

    @c.cached(key=lambda x: ("f", x))  # a nested function has no name of its own
    def f(x: int) -> list:
        return [x]

    assert f(1) is f(1)

    async def main() -> None:
        v = await c.cached_async("k", lambda: asyncio.sleep(0, result=[2]))
        assert c.get("k") is v

    asyncio.run(main())


def test_repr_of_a_decorated_function(name: str) -> None:
    @coopcache.cached(name, key=lambda x: x)
    def f(x: int) -> int:
        return x

    assert "f" in repr(f) and name in repr(f)


def test_idle_evictions_are_logged_from_the_sweeper_thread(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="coopcache")
    n = fresh(cache_duration=0.1)
    coopcache.cached(n, "k", lambda: "v")
    wait_until(
        lambda: any(n in r.getMessage() and "idle" in r.getMessage() for r in caplog.records),
        "the idle eviction is logged",
    )


def test_interpreter_exit_with_entries_and_a_busy_sweeper() -> None:
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import logging, threading, coopcache
        logging.basicConfig(level=logging.DEBUG)
        coopcache.configure("x", cache_duration=0.01, memory_limit=10_000, when_full="evict")
        for i in range(2000):
            coopcache.cached("x", i, lambda: [object()] * 10)
        t = threading.Thread(target=lambda: coopcache.cached("x", "slow", lambda: threading.Event().wait(5)),
                             daemon=True)
        t.start()
        print("bye", flush=True)
        """
    )
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "bye"
    assert "Fatal" not in p.stderr and "panicked" not in p.stderr


def test_sync_form_refuses_a_coroutine(name: str) -> None:
    async def fetch() -> int:
        return 1

    with pytest.raises(TypeError, match="cached_async"):
        coopcache.cached(name, "k", fetch)
    assert coopcache.get(name, "k") is None
