"""Batches (``cached_many``): one loader call for the keys nobody has, each of them a flight
that single calls and other batches join. Ordering by events and counters, never sleeps."""

import threading
from collections import Counter
from typing import Dict, List

import coopcache
import pytest
from helpers import wait_until


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
    assert coopcache.get("test-many-decorated", ("test_many.load_users", 3)) == "user 3"
