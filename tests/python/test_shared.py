"""Shared mode (Redis): one computation per key across processes. Each test starts its own
redis-server on a free loopback port; processes are real subprocesses (shared_child.py)."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Iterator, Optional

import coopcache
import pytest
import redis_server
from helpers import wait_until
from resp import command

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD = os.path.join(HERE, "shared_child.py")
_ids = itertools.count()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Redis:
    def __init__(self) -> None:
        self.port = _free_port()
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(redis_server.server_args(self.port), stdout=subprocess.DEVNULL)
        wait_until(self._pong, "redis-server answers PING")

    def _pong(self) -> bool:
        try:
            return bool(command(self.port, "PING") == "PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            command(self.port, "SHUTDOWN", "NOSAVE")
        except (OSError, RuntimeError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def cmd(self, *args: Any) -> Any:
        return command(self.port, *args)


@pytest.fixture
def redis() -> Iterator[Redis]:
    assert shutil.which("redis-server"), "redis-server must be installed (.ci/run installs it)"
    r = Redis()
    try:
        yield r
    finally:
        r.stop()


def cache_name() -> str:
    return f"shared-{os.getpid()}-{next(_ids)}"


def spawn(redis: Redis, cache: str, **cfg: Any) -> subprocess.Popen[str]:
    cfg.setdefault("key", ["user", 42])
    cfg.update(url=redis.url, cache=cache)
    return subprocess.Popen(
        [sys.executable, CHILD, json.dumps(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def report(p: "subprocess.Popen[str]", timeout: float = 60) -> dict[str, Any]:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err
    first = json.loads(out.splitlines()[0])
    first["stderr"] = err
    return first


def computed(redis: Redis, cache: str) -> int:
    v = redis.cmd("GET", f"coopcache-test:computed:{cache}")
    return int(v) if v is not None else 0


def value_key(cache: str, key: Any) -> bytes:
    return f"coopcache:{cache}:v:".encode() + coopcache.key_bytes(key)


def test_stampede_across_processes_computes_once(redis: Redis) -> None:
    c = cache_name()
    procs = [spawn(redis, c, threads=5, sleep=0.5, value={"n": 42}) for _ in range(5)]
    reports = [report(p) for p in procs]
    results = [r for rep in reports for r in rep["results"]]
    assert len(results) == 25
    assert all(r == {"ok": {"n": 42}} for r in results), results
    assert computed(redis, c) == 1
    assert sum(rep["computed"] for rep in reports) == 1
    assert sum(rep["stats"]["leases_won"] for rep in reports) == 1

    # A process started afterwards reads the value from Redis without computing.
    late = report(spawn(redis, c, threads=2, value={"n": -1}))
    assert late["results"] == [{"ok": {"n": 42}}] * 2
    assert late["computed"] == 0 and late["stats"]["remote_hits"] == 1
    assert computed(redis, c) == 1


def test_killed_lease_holder_is_taken_over(redis: Redis) -> None:
    c = cache_name()
    holder = spawn(redis, c, lease_ttl=0.5, sleep=60, value="from the holder")
    wait_until(lambda: computed(redis, c) >= 1, "the holder computes")
    other = spawn(redis, c, lease_ttl=0.5, threads=2, value="from the other")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    rep = report(other)
    assert rep["results"] == [{"ok": "from the other"}] * 2
    assert rep["computed"] == 1
    assert computed(redis, c) == 2


def test_computation_longer_than_the_lease_is_not_duplicated(redis: Redis) -> None:
    c = cache_name()
    first = spawn(redis, c, lease_ttl=0.5, sleep=2.0, value="slow")
    wait_until(lambda: computed(redis, c) >= 1, "the first process computes")
    others = [spawn(redis, c, lease_ttl=0.5, threads=2, value="dup") for _ in range(2)]
    assert report(first)["results"] == [{"ok": "slow"}]
    for p in others:
        rep = report(p)
        assert rep["results"] == [{"ok": "slow"}] * 2
        assert rep["computed"] == 0
    assert computed(redis, c) == 1


def test_error_reaches_the_other_processes_and_is_not_stored(redis: Redis) -> None:
    c = cache_name()
    started = f"coopcache-test:started:{c}"
    failing = spawn(redis, c, sleep=3.0, **{"raise": ["ValueError", "boom 42"]})
    wait_until(lambda: computed(redis, c) >= 1, "the failing process computes")
    waiters = [spawn(redis, c, threads=2, value="unused", started=started) for _ in range(2)]
    rep = report(failing)
    assert rep["results"] == [{"err": ["ValueError", None, "boom 42"]}]
    for p in waiters:
        rep = report(p)
        assert rep["computed"] == 0
        assert rep["results"] == [{"err": ["RemoteError", "ValueError", "ValueError: boom 42"]}] * 2
    assert redis.cmd("EXISTS", value_key(c, ("user", 42))) == 0
    # Not stored: the next process computes.
    again = report(spawn(redis, c, value="fine"))
    assert again["results"] == [{"ok": "fine"}] and again["computed"] == 1


def test_nocache_reaches_the_other_processes_and_is_not_stored(redis: Redis) -> None:
    c = cache_name()
    started = f"coopcache-test:started:{c}"
    first = spawn(redis, c, sleep=3.0, nocache=True, value="once")
    wait_until(lambda: computed(redis, c) >= 1, "the first process computes")
    waiter = spawn(redis, c, threads=2, value="unused", started=started)
    assert report(first)["results"] == [{"ok": "once"}]
    rep = report(waiter)
    assert rep["results"] == [{"ok": "once"}] * 2 and rep["computed"] == 0
    assert redis.cmd("EXISTS", value_key(c, ("user", 42))) == 0


def test_decorator_form_uses_the_shared_tier(redis: Redis) -> None:
    c = cache_name()
    coopcache.configure(c, redis_url=redis.url, serializer="json")
    calls: list[int] = []

    @coopcache.cached(c, key=lambda x: ("square", x))
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    assert square(7) == 49 and square(7) == 49 and calls == [7]
    stored = f"coopcache:{c}:v:".encode() + square.cache_key(7)
    assert redis.cmd("EXISTS", stored) == 1
    # (Not asserting its return value: the core sends the invalidation to Redis before removing
    # the local entry, so this process's own message can remove it first; see the report.)
    square.invalidate(7)
    assert coopcache.stats(c)["entries"] == 0
    wait_until(lambda: redis.cmd("EXISTS", stored) == 0, "the decorator's invalidate reached Redis")


def test_invalidation_reaches_other_processes(redis: Redis) -> None:
    c = cache_name()
    coopcache.configure(c, redis_url=redis.url, serializer="json")
    key = ("user", 42)
    assert coopcache.cached(c, key, lambda: "here") == "here"
    watcher = spawn(redis, c, value="unused", watch=True)
    assert watcher.stdout is not None
    first = json.loads(watcher.stdout.readline())
    assert first["results"] == [{"ok": "here"}] and first["computed"] == 0
    coopcache.invalidate(c, key)
    assert coopcache.get(c, key) is None
    out, err = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, err
    assert json.loads(out.splitlines()[0]) == {"dropped": True}
    wait_until(lambda: redis.cmd("EXISTS", value_key(c, key)) == 0, "the value is gone from Redis")


def test_invalidate_tag_and_clear_reach_other_processes(redis: Redis) -> None:
    c = cache_name()
    coopcache.configure(c, redis_url=redis.url, serializer="json")
    assert coopcache.cached(c, "a", lambda: 1, tags=["t"]) == 1
    assert coopcache.cached(c, "b", lambda: 2) == 2
    rep = report(spawn(redis, c, key="a", value="unused"))
    assert rep["results"] == [{"ok": 1}] and rep["computed"] == 0
    coopcache.invalidate_tag(c, "t")
    wait_until(lambda: redis.cmd("EXISTS", value_key(c, "a")) == 0, "the tagged value is gone")
    assert redis.cmd("EXISTS", value_key(c, "b")) == 1
    coopcache.clear(c)
    wait_until(lambda: redis.cmd("EXISTS", value_key(c, "b")) == 0, "clear reached Redis")


def test_idle_ttl_reads_keep_the_entry_alive_then_it_expires(redis: Redis) -> None:
    c = cache_name()
    key = ("user", 42)
    vk = value_key(c, key)
    assert report(spawn(redis, c, cache_duration=1.5, value="v"))["computed"] == 1
    assert 0 < redis.cmd("PTTL", vk) <= 1500
    coopcache.configure(c, redis_url=redis.url, serializer="json", cache_duration=1.5)
    end = time.monotonic() + 5.0  # over three idle periods of reads
    while time.monotonic() < end:
        assert coopcache.cached(c, key, lambda: "recomputed") == "v"
        assert redis.cmd("EXISTS", vk) == 1
        time.sleep(0.05)
    assert computed(redis, c) == 1
    wait_until(lambda: redis.cmd("EXISTS", vk) == 0, "the unread entry expires in Redis")


def test_redis_outage_mid_stampede_then_back(redis: Redis) -> None:
    c = cache_name()
    coopcache.configure(c, redis_url=redis.url, serializer="json")
    wait_until(
        lambda: (
            coopcache.cached(c, "probe", lambda: 1) == 1 and redis.cmd("EXISTS", value_key(c, "probe")) == 1
        ),
        "the shared tier is up",
    )
    procs = [spawn(redis, c, threads=3, sleep=1.5, value="v") for _ in range(3)]
    wait_until(lambda: computed(redis, c) >= 1, "a process computes")
    redis.stop()
    reports = [report(p) for p in procs]
    results = [r for rep in reports for r in rep["results"]]
    assert results == [{"ok": "v"}] * 9, [rep["stderr"] for rep in reports]
    # Single flight per process still holds without Redis.
    assert all(rep["computed"] <= 1 for rep in reports)
    # This process keeps working on its local tier while Redis is down.
    assert coopcache.cached(c, "during", lambda: "local") == "local"
    redis.start()
    n = itertools.count()

    def used_again() -> bool:
        k = ("after", next(n))
        coopcache.cached(c, k, lambda: "after")
        return bool(redis.cmd("EXISTS", value_key(c, k)) == 1)

    wait_until(used_again, "the shared tier is used again after Redis is back")


def test_tampered_value_is_refused_and_logged(redis: Redis) -> None:
    c = cache_name()
    key = ("user", 42)
    vk = value_key(c, key)
    assert report(spawn(redis, c, secret="s3cret", value="genuine"))["computed"] == 1
    raw = redis.cmd("GET", vk)
    assert isinstance(raw, bytes) and len(raw) > 0
    last = raw[-1:]
    redis.cmd("SETRANGE", vk, len(raw) - 1, bytes([last[0] ^ 0x01]))
    rep = report(spawn(redis, c, secret="s3cret", value="recomputed"))
    assert rep["results"] == [{"ok": "recomputed"}] and rep["computed"] == 1
    assert rep["stats"]["rejected_values"] >= 1
    assert "refused" in rep["stderr"] and "coopcache" in rep["stderr"]


def test_pickle_with_secret_round_trips(redis: Redis) -> None:
    c = cache_name()
    coopcache.configure(c, redis_url=redis.url, serializer="pickle", secret=b"k")
    wait_until(
        lambda: (
            coopcache.cached(c, ("p", 0), lambda: {1, 2}) == {1, 2}
            and redis.cmd("EXISTS", value_key(c, ("p", 0))) == 1
        ),
        "the shared tier is up",
    )
    value = {"set": {1, 2}, "tuple": (1, "a"), "bytes": b"\x00"}
    assert coopcache.cached(c, ("p", 1), lambda: value) == value
    coopcache.clear(c)  # the local tier; Redis too, so store again and read it back elsewhere
    wait_until(lambda: redis.cmd("EXISTS", value_key(c, ("p", 1))) == 0, "cleared")
    assert coopcache.cached(c, ("p", 1), lambda: value) == value
    rep = report(spawn(redis, c, key=["p", 1], serializer="pickle", secret="k", value=None))
    assert rep["computed"] == 0 and rep["stats"]["remote_hits"] == 1


def test_value_that_cannot_be_serialized_stays_local(redis: Redis, caplog: pytest.LogCaptureFixture) -> None:
    c = cache_name()
    coopcache.configure(c, redis_url=redis.url, serializer="json")
    with caplog.at_level(logging.WARNING, logger="coopcache"):
        assert coopcache.cached(c, "s", lambda: {1, 2}) == {1, 2}
    assert coopcache.cached(c, "s", lambda: set()) == {1, 2}  # stored locally
    assert redis.cmd("EXISTS", value_key(c, "s")) == 0
    assert "could not be serialized" in caplog.text


def test_json_every_process_sees_the_value_json_gives(redis: Redis) -> None:
    # The computing process keeps and returns what the other processes read from Redis: int
    # keys become str, tuples lists (sync and async forms, the waiters of the flight too).
    c = cache_name()
    coopcache.configure(c, redis_url=redis.url, serializer="json")
    wait_until(
        lambda: (
            coopcache.cached(c, ("j", 0), lambda: 0) == 0 and redis.cmd("EXISTS", value_key(c, ("j", 0))) == 1
        ),
        "the shared tier is up",
    )
    as_json = {"1": "a", "pair": [1, 2], "nested": [{"2": [3]}]}

    def compute() -> Any:
        return {1: "a", "pair": (1, 2), "nested": ({2: (3,)},)}

    assert coopcache.cached(c, ("j", 1), compute) == as_json
    assert coopcache.get(c, ("j", 1)) == as_json
    assert coopcache.cached(c, ("j", 1), compute) == as_json

    async def acompute() -> Any:
        return compute()

    assert asyncio.run(coopcache.cached_async(c, ("j", 2), acompute)) == as_json
    assert coopcache.get(c, ("j", 2)) == as_json
    for key in (["j", 1], ["j", 2]):
        rep = report(spawn(redis, c, key=key, value=None))
        assert rep["computed"] == 0 and rep["results"] == [{"ok": as_json}]
    # nocache: the callers get the value json gives too.
    assert coopcache.cached(c, ("j", 3), lambda: coopcache.nocache(compute())) == as_json


def test_value_that_cannot_be_deserialized_is_a_miss(redis: Redis) -> None:
    c = cache_name()
    # Signed with the same secret, but pickled: a json reader cannot read it.
    first = report(spawn(redis, c, serializer="pickle", secret="k", value="pickled"))
    assert first["computed"] == 1
    rep = report(spawn(redis, c, serializer="json", secret="k", value="recomputed"))
    assert rep["results"] == [{"ok": "recomputed"}] and rep["computed"] == 1
    assert "could not be deserialized" in rep["stderr"]


def test_async_leader_and_waiter(redis: Redis) -> None:
    c = cache_name()
    coopcache.configure(c, redis_url=redis.url, serializer="json")
    wait_until(
        lambda: (
            coopcache.cached(c, "probe", lambda: 1) == 1 and redis.cmd("EXISTS", value_key(c, "probe")) == 1
        ),
        "the shared tier is up",
    )

    async def compute() -> str:
        await asyncio.sleep(0.01)
        return "async value"

    async def callers() -> list[str]:
        return list(
            await asyncio.gather(*(coopcache.cached_async(c, ("user", 42), compute) for _ in range(5)))
        )

    assert asyncio.run(callers()) == ["async value"] * 5
    assert redis.cmd("EXISTS", value_key(c, ("user", 42))) == 1
    rep = report(spawn(redis, c, value="unused"))
    assert rep["results"] == [{"ok": "async value"}] and rep["computed"] == 0

    # A value computed by another process, read by an async caller here.
    assert report(spawn(redis, c, key=["other"], value="from child"))["computed"] == 1

    async def never() -> str:
        raise AssertionError("should come from Redis")

    assert asyncio.run(coopcache.cached_async(c, ("other",), never)) == "from child"

    # An async failure reaches another process as RemoteError.
    started = f"coopcache-test:started:{c}"

    async def failing() -> str:
        wait_until(lambda: int(redis.cmd("GET", started) or 0) >= 1, "the other process waits")
        await asyncio.sleep(1.0)
        raise KeyError("missing")

    waiter = None

    async def lead() -> None:
        nonlocal waiter
        waiter = spawn(redis, c, key=["boom"], value="unused", started=started)
        with pytest.raises(KeyError):
            await coopcache.cached_async(c, ("boom",), failing)

    asyncio.run(lead())
    assert waiter is not None
    rep = report(waiter)
    assert rep["results"] == [{"err": ["RemoteError", "KeyError", "KeyError: 'missing'"]}]


def test_stats_have_shared_counters(redis: Redis) -> None:
    c = cache_name()
    coopcache.configure(c, redis_url=redis.url, serializer="json")
    s = coopcache.stats(c)
    for k in ("remote_hits", "leases_won", "leases_lost", "remote_waits", "fallbacks", "rejected_values"):
        assert isinstance(s[k], int)
    assert "remote_hits" not in coopcache.stats(coopcache.configure(cache_name()).name)


def test_configuration_errors(redis: Redis) -> None:
    with pytest.raises(ValueError, match="secret"):
        coopcache.configure(cache_name(), redis_url=redis.url)
    with pytest.raises(ValueError, match="secret"):
        coopcache.configure(cache_name(), redis_url=redis.url, serializer="pickle")
    with pytest.raises(ValueError, match="serializer"):
        coopcache.configure(cache_name(), redis_url=redis.url, serializer="xml", secret="k")
    with pytest.raises(ValueError) as e:
        coopcache.configure(
            cache_name(), redis_url="redis://user:hunter2@localhost:notaport/0", serializer="json"
        )
    assert "hunter2" not in str(e.value) and "redis_url" in str(e.value)
    with pytest.raises(ValueError) as e:
        coopcache.configure(cache_name(), redis_url="http://user:hunter2@localhost:1", serializer="json")
    assert "hunter2" not in str(e.value)
    with pytest.raises(ValueError, match="lease_ttl"):
        coopcache.configure(cache_name(), redis_url=redis.url, serializer="json", lease_ttl=-1)
    # Existing caches: omitted options keep their values; another URL or serializer is refused.
    c = cache_name()
    coopcache.configure(c, redis_url=redis.url, serializer="json")
    coopcache.configure(c, cache_duration=5)
    assert "remote_hits" in coopcache.stats(c)
    with pytest.raises(ValueError, match="redis_url"):
        coopcache.configure(c, redis_url="redis://127.0.0.1:1", serializer="json")
    with pytest.raises(ValueError, match="serializer"):
        coopcache.configure(c, serializer="pickle")
    coopcache.configure(c, serializer="json")  # the same one again


def test_remote_error_class() -> None:
    e = coopcache.RemoteError("ValueError", "bad")
    assert isinstance(e, Exception)
    assert (e.type_name, e.message, str(e)) == ("ValueError", "bad", "ValueError: bad")


def test_shared_worker_script(redis: Redis) -> None:
    c = cache_name()
    worker = os.path.join(HERE, "shared_worker.py")
    procs = [
        subprocess.Popen([sys.executable, worker, redis.url, c], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert [json.loads(o) for o in outs] == [{"value": "from python"}] * 3
    assert computed(redis, c) == 1


def test_a_value_due_in_every_process_is_refreshed_once_for_the_fleet(redis: Redis) -> None:
    """Four processes whose copies fall due together (their manual clocks moved alike): each
    returns its old value at once, and one refresh, by whichever process the key's lease
    picks, gives every process the new value. A fifth process, whose copy is not due yet,
    hears of that refresh: its next call returns its copy and takes the new value from
    Redis, without computing."""
    cache = cache_name()
    cfg = json.dumps({"url": redis.url, "cache": cache, "key": "report", "refresh_after": 60})
    child = os.path.join(HERE, "refresh_child.py")
    pipes: dict[str, Any] = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "text": True}
    fleet = [subprocess.Popen([sys.executable, child, cfg], **pipes) for _ in range(4)]
    late = subprocess.Popen([sys.executable, child, cfg], **pipes)

    def send(p: "subprocess.Popen[str]", **m: Any) -> None:
        assert p.stdin is not None
        p.stdin.write(json.dumps(m) + "\n")
        p.stdin.flush()

    def answer(p: "subprocess.Popen[str]") -> Any:
        assert p.stdout is not None
        return json.loads(p.stdout.readline())

    def each(**m: Any) -> list[Any]:
        for p in fleet:
            send(p, **m)
        return [answer(p) for p in fleet]

    def ask(p: "subprocess.Popen[str]", **m: Any) -> Any:
        send(p, **m)
        return answer(p)

    try:
        assert each(op="call", value="v1") == ["v1"] * 4
        assert computed(redis, cache) == 1, "the other processes wait for it in Redis"
        each(op="advance", seconds=30)
        ask(late, op="advance", seconds=30)
        assert ask(late, op="call", value="late") == "v1", "read from Redis half-way"
        each(op="advance", seconds=31)
        ask(late, op="advance", seconds=31)
        assert each(op="call", value="v2") == ["v1"] * 4, "a due value is returned at once"
        assert each(op="until", value="v2") == [True] * 4, "every process gets the new value"
        assert computed(redis, cache) == 2, "one refresh for the fleet"
        assert [s["refreshes_succeeded"] for s in each(op="stats")] == [1] * 4
        # Not due by its own clock (31 s old), the late process's copy fell due on the
        # fleet's refresh: a call returns it, and the next ones the new value, not computed.
        assert ask(late, op="call_until", value="v2", compute="late") is True
        assert computed(redis, cache) == 2, "the late process took the value from Redis"
        assert ask(late, op="stats")["refreshes_succeeded"] == 1
    finally:
        for p in [*fleet, late]:
            assert p.stdin is not None
            p.stdin.close()
            p.wait(timeout=30)
