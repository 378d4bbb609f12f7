"""A shared-tier hit from Python against a redis-py GET of a value of the same stored size
(issue 5, the optional Python half of bench_shared.rs; on a Redis Cluster too, issue 12).

    python bench/shared/hit.py --url redis://127.0.0.1:PORT [--reads 2000] [--rounds 5] [--json PATH]
    python bench/shared/hit.py --url redis+cluster://127.0.0.1:PORT,... [...]

For each value size (JSON strings of 64 B and 4 KiB), a writer process fills the shared tier
with READS keys through coopcache (serializer="json"), then each round starts a new reader
process: its local tier is empty, so every coopcache.cached(name, key, fn) there is a local
miss answered by Redis (GETEX, check, json.loads, local store). The same process then reads
READS raw keys holding values of the stored blob's length with redis-py's Redis.get (one
connection, the plain sync client most Python code uses; on a cluster its RedisCluster, the
seeds as startup nodes; the order of the two alternates by round). Reported: the median over
rounds of the mean ns per read, and the p50 of all reads.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from client import is_cluster, redis_client

SIZES = (64, 4096)


def _payload(size: int) -> str:
    return "x" * (size - 2)  # with its quotes, `size` bytes of JSON


def _raw_key(name: str, key: Any) -> bytes:
    """Beside the tier's value key and as long: `coopcache:NAME:r:` and the key's bytes."""
    import coopcache

    return f"coopcache:{name}:r:".encode() + coopcache.key_bytes(key)


def _value_key(r: Any, url: str, name: str) -> bytes:
    """The key of a value the writer stored (on a cluster its name carries a hash tag: scanned
    for, on every master)."""
    import coopcache

    if is_cluster(url):
        return bytes(next(iter(r.scan_iter(match=f"coopcache:{name}:v:*".encode(), count=1000))))
    return f"coopcache:{name}:v:".encode() + coopcache.key_bytes(("k", 0))


def _configure(args: argparse.Namespace) -> None:
    import coopcache

    coopcache.configure(args.name, redis_url=args.url, serializer="json", cache_duration=600)


def write(args: argparse.Namespace) -> int:
    import coopcache

    _configure(args)
    value = _payload(args.size)
    for i in range(args.reads):
        coopcache.cached(args.name, ("k", i), lambda: value)
    won = coopcache.stats(args.name)["leases_won"]
    if won != args.reads:
        print(f"wrote {won} of {args.reads} values to Redis", file=sys.stderr)
        return 1
    return 0


def read(args: argparse.Namespace) -> int:
    import coopcache

    r = redis_client(args.url)
    r.ping()
    _configure(args)
    keys = [("k", i) for i in range(args.reads)]
    raw_keys = [_raw_key(args.name, k) for k in keys]

    def miss() -> Any:
        raise RuntimeError("a shared-tier read was not a hit")

    def coop() -> list[int]:
        lat = []
        for k in keys:
            t0 = time.perf_counter_ns()
            coopcache.cached(args.name, k, miss)
            lat.append(time.perf_counter_ns() - t0)
        return lat

    def raw() -> list[int]:
        lat = []
        for k in raw_keys:
            t0 = time.perf_counter_ns()
            r.get(k)
            lat.append(time.perf_counter_ns() - t0)
        return lat

    if args.raw_first:
        raw_lat, coop_lat = raw(), coop()
    else:
        coop_lat, raw_lat = coop(), raw()
    hits = coopcache.stats(args.name)["remote_hits"]
    if hits != args.reads:
        print(f"{hits} of {args.reads} reads were shared-tier hits", file=sys.stderr)
        return 1
    print(json.dumps({"coop": coop_lat, "raw": raw_lat}))
    return 0


def _summary(means: list[float], lat: list[int]) -> dict[str, float]:
    lat.sort()
    return {
        "ns_per_read": statistics.median(means),
        "ns_per_read_min": min(means),
        "ns_per_read_max": max(means),
        "p50_ns": lat[len(lat) // 2],
        "p99_ns": lat[min(len(lat) - 1, round((len(lat) - 1) * 0.99))],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--reads", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json")
    ap.add_argument("--mode", choices=("main", "write", "read"), default="main", help=argparse.SUPPRESS)
    ap.add_argument("--name", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--raw-first", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mode == "write":
        return write(args)
    if args.mode == "read":
        return read(args)

    r = redis_client(args.url)
    rows: list[dict[str, Any]] = []
    for size in SIZES:
        name = f"bench-pyhit-{os.getpid()}-{size}"
        base = [
            sys.executable,
            os.path.abspath(__file__),
            "--url",
            args.url,
            "--name",
            name,
            "--reads",
            str(args.reads),
            "--size",
            str(size),
        ]
        subprocess.run([*base, "--mode", "write"], check=True)
        stored = int(r.strlen(_value_key(r, args.url, name)))
        with r.pipeline(transaction=False) as p:
            for i in range(args.reads):
                p.set(_raw_key(name, ("k", i)), b"x" * stored, px=600_000)
            p.execute()
        means: dict[str, list[float]] = {"coop": [], "raw": []}
        lats: dict[str, list[int]] = {"coop": [], "raw": []}
        for rnd in range(args.rounds):
            flags = ["--raw-first"] if rnd % 2 else []
            read_cmd = [*base, "--mode", "read", *flags]
            out = subprocess.run(read_cmd, check=True, capture_output=True, text=True)
            got = json.loads(out.stdout)
            for case in ("coop", "raw"):
                means[case].append(sum(got[case]) / len(got[case]))
                lats[case].extend(got[case])
        raw = _summary(means["raw"], lats["raw"])
        for case, label in (("coop", "coopcache shared-tier hit"), ("raw", "redis-py GET")):
            sm = _summary(means[case], lats[case])
            # Paired by round (the same process, one after the other), like bench_shared.rs.
            sm["vs_raw_get"] = statistics.median(a / b for a, b in zip(means[case], means["raw"]))
            sm["p50_vs_raw_get"] = sm["p50_ns"] / raw["p50_ns"]
            rows.append({"case": label, "payload_bytes": size, "stored_bytes": stored, **sm})
            print(
                f"{label}, {size} B: {sm['ns_per_read'] / 1000:.1f} us/read "
                f"(p50 {sm['p50_ns'] / 1000:.1f} us), {sm['vs_raw_get']:.2f}x"
            )
    if args.json:
        import importlib.metadata as md

        out_json = {
            "reads_per_round": args.reads,
            "rounds": args.rounds,
            "client": f"redis-py {md.version('redis')}, sync "
            + ("RedisCluster.get" if is_cluster(args.url) else "Redis.get on one connection"),
            "results": rows,
        }
        with open(args.json, "w") as f:
            json.dump(out_json, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
