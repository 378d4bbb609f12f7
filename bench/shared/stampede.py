"""Cross-process stampede latency (issue 5): coopcache's shared tier against dogpile.cache's
Redis backend with its distributed lock, on the same stampede.

    python bench/shared/stampede.py --url redis://127.0.0.1:PORT [--procs 8] [--threads 4]
        [--rounds 11] [--sleep 0.05] [--only coopcache,dogpile,floor] [--hold] [--json PATH]

(or --url redis+cluster://HOST:PORT,... for a Redis Cluster: dogpile.cache then uses its
"dogpile.cache.redis_cluster" backend with the seeds as startup nodes)

PROCS worker processes (this file with --worker), THREADS callers each, ask for one cold key at
the same moment; the function that computes it sleeps SLEEP seconds. Each round uses a new key
(a round's first caller finds nothing locally nor in Redis). Timestamps are time.monotonic_ns(),
CLOCK_MONOTONIC, which is one clock for every process on Linux, so they compare across
processes: the *write* is the moment the (first) computing function returns, and a caller's
latency is its return minus that. The last caller's latency is the stampede's cost beyond the
computation itself. Executions are counted by the function in every process. Round 0 warms
connections up and is not counted.

With --hold, a caller thread that returned stays (sleeping) until SLEEP + 0.1 s after the go
signal, so that no process's thread exits, join, JSON line and the parent's read of it run while
other processes' callers still wait: without it, on 2 cores that work of the processes served
first is part of the last waiter's latency (0.6-1.3 ms on a 2-core VM, by perf sched), the same
for every contender and no part of the stampede's own cost.

Contenders (same processes count, same callers, same key per round):
* coopcache: configure(name, redis_url=URL, serializer="json"), cached(name, key, fn).
* dogpile.cache 1.5.0: region "dogpile.cache.redis" with distributed_lock=True and
  thread_local_lock=False (what its docs say for a distributed lock), lock_timeout=10 (like
  coopcache's lease), get_or_create(key, fn); once with its default lock_sleep (0.1 s: waiters
  poll the lock) and once with lock_sleep=0.01, a setting a user who cares about this would pick.
* coopcache again with one caller a process: on a machine with few cores, the last waiter's
  latency is largely the time to wake every waiting Python thread; this row shows how much.
* floor: the least a cross-process stampede over Redis does with Python's own tools (redis-py,
  threading) and no cache library, with THREADS and with 1 caller a process (coopcache reads the
  channel in native code, without the GIL, so it can come in under it). Every process subscribes to
  one channel before the first round; a thread of its own reads the channel (pubsub.listen()).
  The leader is chosen without Redis: process 0's first caller of the round computes, encodes the
  value as serializer="json" does (json.dumps, separators (",", ":"), ensure_ascii=False,
  allow_nan=False), PUBLISHes "ROUND PAYLOAD" and returns once Redis answered; its process's
  other callers then take its object. Every other caller waits on a threading.Condition that the
  reader thread notifies when the round's message arrives, and decodes the payload itself
  (json.loads). It skips what a real cache must do (electing a leader across processes, storing
  the value, leases, signing, the local tier), so it is a floor, not a contender; the time its
  reader thread read the message is reported too (the value in every process). Twice more
  without the reader thread: one waiting caller of each process reads the channel itself
  (pubsub.get_message) and wakes the others, one hop fewer. Not run on a Redis Cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Optional

from client import cluster_nodes, is_cluster

# (label, library, dogpile's lock_sleep, callers per process: None for --threads)
CONTENDERS: list[tuple[str, str, float, Optional[int]]] = [
    ("coopcache", "coopcache", 0.0, None),
    ("dogpile.cache (lock_sleep=0.1, default)", "dogpile", 0.1, None),
    ("dogpile.cache (lock_sleep=0.01)", "dogpile", 0.01, None),
    # How much of the spread is waking many Python threads on few cores: one caller a process.
    ("coopcache, 1 caller a process", "coopcache", 0.0, 1),
    # The least any cross-process stampede over Redis can do in Python (no cache library).
    ("floor: Redis PUBLISH to waiting threads, no cache", "floor", 0.0, None),
    ("floor, 1 caller a process", "floor", 0.0, 1),
    # Lower still: no reader thread, one waiting caller of each process reads the channel itself.
    ("floor, a caller reads the channel", "floor-direct", 0.0, None),
    ("floor, a caller reads the channel, 1 caller a process", "floor-direct", 0.0, 1),
]

# floor: round -> when this process's reader thread read the round's message (monotonic ns).
RECEIVED: dict[int, int] = {}


Getter = Callable[[int, Callable[[], Any]], Any]


def _floor(url: str, name: str, rank: int, direct: bool) -> Getter:
    """The floor's get (see the module's docstring): process 0's first caller of a round computes
    and PUBLISHes; every other caller waits for the message its process's reader thread reads
    (`direct`: that one of its waiting callers reads, the others wait for it)."""
    import redis

    client: Any = redis.Redis.from_url(url)  # redis-py is partly untyped
    pubsub = client.pubsub()
    pubsub.subscribe(name)
    if pubsub.get_message(timeout=10) is None:  # the subscription's confirmation
        raise RuntimeError("floor: no confirmation of SUBSCRIBE")
    values: dict[int, Any] = {}  # round -> the payload (bytes), or the leader's own object
    leaders: set[int] = set()
    reading = [False]  # direct: a caller reads the channel now
    cond = threading.Condition()

    def take(msg: Any) -> int:
        """Keeps a message's payload for its round's callers and wakes them; its round."""
        t = time.monotonic_ns()
        if msg is None or msg["type"] != "message":
            return -1
        head, _, payload = msg["data"].partition(b" ")
        with cond:
            RECEIVED[int(head)] = t
            values.setdefault(int(head), payload)
            cond.notify_all()
        return int(head)

    def read() -> None:
        for msg in pubsub.listen():
            take(msg)

    if not direct:
        threading.Thread(target=read, daemon=True).start()

    def get(rnd: int, fn: Callable[[], Any]) -> Any:
        if rank == 0:
            with cond:
                lead = rnd not in leaders
                leaders.add(rnd)
            if lead:
                v = fn()
                payload = json.dumps(v, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
                client.publish(name, f"{rnd} {payload}".encode())
                with cond:
                    values[rnd] = v
                    cond.notify_all()
                return v
        with cond:
            while rnd not in values and (reading[0] or not direct):
                cond.wait()
            read_here = rnd not in values
            reading[0] = reading[0] or read_here
        if read_here:
            try:
                while take(pubsub.get_message(timeout=None)) != rnd:
                    pass
            finally:
                with cond:
                    reading[0] = False
                    cond.notify_all()
        with cond:
            v = values[rnd]
        return json.loads(v) if isinstance(v, bytes) else v

    return get


def _getter(lib: str, url: str, name: str, lock_sleep: float, rank: int) -> tuple[Getter, Callable[[], int]]:
    """The contender's get-or-compute for the key of a round, and its count of calls that went on
    without Redis (coopcache's fallbacks: a round with any would not be a shared stampede)."""
    if lib.startswith("floor"):
        return _floor(url, name, rank, direct=lib == "floor-direct"), lambda: 0
    if lib == "coopcache":
        import coopcache

        coopcache.configure(name, redis_url=url, serializer="json", cache_duration=60)
        return (
            lambda r, fn: coopcache.cached(name, ("stampede", r), fn),
            lambda: int(coopcache.stats(name)["fallbacks"]),
        )
    from dogpile.cache import make_region

    # On a cluster, its cluster backend (redis-py's RedisCluster, the seeds as startup nodes).
    backend, where = (
        ("dogpile.cache.redis_cluster", {"startup_nodes": cluster_nodes(url)})
        if is_cluster(url)
        else ("dogpile.cache.redis", {"url": url})
    )
    region = make_region().configure(
        backend,
        arguments={
            **where,
            "redis_expiration_time": 60,
            "distributed_lock": True,
            "thread_local_lock": False,
            "lock_timeout": 10,
            "lock_sleep": lock_sleep,
        },
    )
    return lambda r, fn: region.get_or_create(f"{name}:stampede:{r}", fn), lambda: 0


def _stampede(args: argparse.Namespace, get: Getter, rnd: int, go: int) -> dict[str, Any]:
    """THREADS callers of this process ask for round `rnd`'s key at `go` (monotonic ns)."""
    done: list[int] = []
    starts: list[int] = []
    returns: list[int] = []
    leaders: list[int] = []
    errors: list[str] = []
    computers: set[int] = set()
    lock = threading.Lock()

    def compute() -> Any:
        time.sleep(args.sleep)
        t = time.monotonic_ns()  # the value's write: the moment the computation returns
        with lock:
            done.append(t)
            computers.add(threading.get_ident())
        return {"round": rnd}

    def call() -> None:
        time.sleep(max(0.0, (go - time.monotonic_ns()) / 1e9))
        t0 = time.monotonic_ns()
        try:
            v = get(rnd, compute)
            ok = v == {"round": rnd}
        except Exception as e:  # noqa: BLE001 - reported, not raised
            ok, v = False, repr(e)
        t1 = time.monotonic_ns()
        with lock:
            starts.append(t0)
            returns.append(t1)
            if threading.get_ident() in computers:
                leaders.append(t1)
            if not ok:
                errors.append(repr(v))
        if args.hold:  # blocked, no CPU, until every process is surely served
            time.sleep(max(0.0, (go + int((args.sleep + 0.1) * 1e9) - time.monotonic_ns()) / 1e9))

    threads = [threading.Thread(target=call) for _ in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"done": done, "starts": starts, "returns": returns, "leaders": leaders, "errors": errors}


def worker(args: argparse.Namespace) -> int:
    """One process: on each `GO round go_ns` line, a stampede; prints what its callers saw as one
    JSON line."""
    get, fallbacks = _getter(args.worker, args.url, args.name, args.lock_sleep, args.rank)
    print("ready", flush=True)
    for line in sys.stdin:
        parts = line.split()
        if not parts or parts[0] != "GO":
            break
        out = _stampede(args, get, int(parts[1]), int(parts[2]))
        out["fallbacks"] = fallbacks()
        out["received"] = RECEIVED.get(int(parts[1]))
        print(json.dumps(out), flush=True)
    return 0


def run(args: argparse.Namespace, label: str, lib: str, lock_sleep: float, threads: int) -> dict[str, Any]:
    name = f"bench-stampede-{os.getpid()}-{lib}-{lock_sleep}-{threads}"
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        lib,
        "--url",
        args.url,
        "--name",
        name,
        "--threads",
        str(threads),
        "--sleep",
        str(args.sleep),
        "--lock-sleep",
        str(lock_sleep),
    ]
    cmd += ["--hold"] if args.hold else []
    procs = [
        subprocess.Popen(cmd + ["--rank", str(i)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for i in range(args.procs)
    ]
    rounds: list[dict[str, Any]] = []
    try:
        for p in procs:
            assert p.stdout is not None
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError(f"{label}: a worker did not start")
        for r in range(args.rounds + 1):
            go = time.monotonic_ns() + int(args.lead * 1e9)
            for p in procs:
                assert p.stdin is not None
                p.stdin.write(f"GO {r} {go}\n")
                p.stdin.flush()
            seen = []
            for p in procs:
                assert p.stdout is not None
                seen.append(json.loads(p.stdout.readline()))
            if r == 0:
                continue  # warm-up: connections, imports, first-call paths
            done = sorted(t for s in seen for t in s["done"])
            returns = [t for s in seen for t in s["returns"]]
            starts = [t for s in seen for t in s["starts"]]
            errors = [e for s in seen for e in s["errors"]]
            if not done:
                raise RuntimeError(f"{label}: round {r} computed nothing: {errors[:3]}")
            write = done[0]
            lat = sorted((t - write) / 1e6 for t in returns)
            # The computing caller returns once Redis confirmed the write; other processes' callers
            # return on the completion message.
            leader = min((t for s in seen for t in s["leaders"]), default=write)
            remote = [t for s in seen if not s["done"] for t in s["returns"]]
            # Where the last waiter's time goes: the value reaching every process (each process's
            # first caller to return) and the callers of one process returning after its first
            # (waking its threads, each taking the GIL in turn).
            reached = [min(s["returns"]) for s in seen if s["returns"]]
            spread = [max(s["returns"]) - min(s["returns"]) for s in seen if s["returns"]]
            # floor: when the last process other than the leader's read the message.
            received = [s["received"] for s in seen if not s["done"] and s["received"] is not None]
            rounds.append(
                {
                    "executions": len(done),
                    "last_ms": lat[-1],
                    "median_ms": statistics.median(lat),
                    "leader_ms": (leader - write) / 1e6,
                    "first_other_process_ms": (min(remote) - write) / 1e6 if remote else None,
                    "last_process_reached_ms": (max(reached) - write) / 1e6,
                    "in_process_spread_ms": max(spread) / 1e6,
                    "last_message_read_ms": (max(received) - write) / 1e6 if received else None,
                    "late_callers": sum(1 for t in starts if t >= write),
                    "start_skew_ms": (max(starts) - go) / 1e6,
                    "errors": len(errors),
                    "fallbacks": sum(s["fallbacks"] for s in seen),
                }
            )
            print(
                f"  {label} round {r}: executions {len(done)}, last waiter {lat[-1]:.2f} ms after the write",
                file=sys.stderr,
            )
    finally:
        for p in procs:
            if p.stdin is not None:
                try:
                    p.stdin.write("QUIT\n")
                    p.stdin.close()
                except OSError:
                    pass
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
    last = [x["last_ms"] for x in rounds]
    read = [x["last_message_read_ms"] for x in rounds if x["last_message_read_ms"] is not None]
    execs = [x["executions"] for x in rounds]
    return {
        "contender": label,
        "callers": args.procs * threads,
        "rounds": len(rounds),
        "last_waiter_ms_median": statistics.median(last),
        "last_waiter_ms_max": max(last),
        "caller_ms_median": statistics.median(x["median_ms"] for x in rounds),
        "leader_ms_median": statistics.median(x["leader_ms"] for x in rounds),
        "first_other_process_ms_median": statistics.median(
            x["first_other_process_ms"] for x in rounds if x["first_other_process_ms"] is not None
        ),
        "last_process_reached_ms_median": statistics.median(x["last_process_reached_ms"] for x in rounds),
        "in_process_spread_ms_median": statistics.median(x["in_process_spread_ms"] for x in rounds),
        "last_message_read_ms_median": statistics.median(read) if read else None,
        "executions_total": sum(execs),
        "executions_per_round_max": max(execs),
        "late_callers": sum(x["late_callers"] for x in rounds),
        "errors": sum(x["errors"] for x in rounds),
        "fallbacks": rounds[-1]["fallbacks"] if rounds else 0,
        "per_round": rounds,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--procs", type=int, default=8)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--sleep", type=float, default=0.05, help="the computation's duration, seconds")
    ap.add_argument("--lead", type=float, default=0.2, help="seconds from the go signal to the stampede")
    ap.add_argument("--only", help="the libraries to run, comma-separated: coopcache, dogpile, floor")
    ap.add_argument(
        "--hold",
        action="store_true",
        help="callers that returned wait until every process is served (see above)",
    )
    ap.add_argument("--json")
    ap.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--name", help=argparse.SUPPRESS)
    ap.add_argument("--lock-sleep", type=float, default=0.1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    libs = set(args.only.split(",")) if args.only else {"coopcache", "dogpile", "floor"}
    if is_cluster(args.url):
        libs.discard("floor")  # one channel on one server: the floor of the single-Redis row
    results = [
        run(args, label, lib, ls, args.threads if t is None else t)
        for label, lib, ls, t in CONTENDERS
        if lib.split("-")[0] in libs
    ]
    out = {
        "procs": args.procs,
        "threads": args.threads,
        "compute_s": args.sleep,
        "hold": args.hold,
        "results": results,
    }
    for r in results:
        print(
            f"{r['contender']}: last waiter median {r['last_waiter_ms_median']:.2f} ms, "
            f"max {r['last_waiter_ms_max']:.2f} ms (value in every process after "
            f"{r['last_process_reached_ms_median']:.2f} ms, callers of one process within "
            f"{r['in_process_spread_ms_median']:.2f} ms"
            + (
                ""
                if r["last_message_read_ms_median"] is None
                else f", message read in every process after {r['last_message_read_ms_median']:.2f} ms"
            )
            + "); "
            f"executions {r['executions_total']} in {r['rounds']} rounds"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
