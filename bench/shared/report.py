"""Merges the shared-mode benchmark parts into bench/results/shared.json and shared.md.

    python bench/shared/report.py --rust R.json --stampede S.json [--python-hit P.json]
        [--cluster-rust CR.json] [--cluster-hit CP.json] [--cluster-stampede CS.json]
        [--meta KEY=VALUE ...] --json OUT.json --md OUT.md

R.json comes from `cargo run --example bench_shared -- URL --json R.json`, S.json from
stampede.py and P.json from hit.py (each documents its method); CR.json, CP.json and CS.json from the
same three on a Redis Cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from typing import Any, Optional

HIT_GOAL = 1.2  # a shared-tier hit at most 1.2x a raw GET (issue 5)
STAMPEDE_GOAL_MS = 2.0  # the last waiter within 2 ms of the write, on loopback (issue 5)


def _us(ns: float) -> str:
    return f"{ns / 1000:.1f}"


def _load(path: Optional[str]) -> Optional[dict[str, Any]]:
    if not path:
        return None
    with open(path) as f:
        return dict(json.load(f))


def _hit_table(rows: list[dict[str, Any]], with_signed: bool) -> list[str]:
    head = "| case | value (stored) |" + (" signed | callers |" if with_signed else "")
    head += " µs/read | rounds' range | p50 µs | p99 µs | vs raw GET | p50 vs raw |"
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        line = f"| {r['case']} | {r['payload_bytes']} B ({r['stored_bytes']} B) |"
        if with_signed:
            line += f" {'yes' if r['signed'] else 'no'} | {r['callers']} |"
        line += (
            f" {_us(r['ns_per_read'])} | {_us(r['ns_per_read_min'])}-{_us(r['ns_per_read_max'])} |"
            f" {_us(r['p50_ns'])} | {_us(r['p99_ns'])} | {r['vs_raw_get']:.2f}x |"
            f" {r['p50_vs_raw_get']:.2f}x |"
        )
        out.append(line)
    return out


def _stampede_table(stampede: dict[str, Any]) -> list[str]:
    out = [
        "| contender | callers | last waiter, median ms | last waiter, max ms | median caller ms "
        "| computing caller ms | first other process ms | every process reached ms "
        "| spread within a process ms | executions (rounds) | errors / fallbacks |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in stampede["results"]:
        out.append(
            f"| {r['contender']} | {r['callers']} | {r['last_waiter_ms_median']:.2f} | "
            f"{r['last_waiter_ms_max']:.2f} | "
            f"{r['caller_ms_median']:.2f} | {r['leader_ms_median']:.2f} | "
            f"{r['first_other_process_ms_median']:.2f} | {r['last_process_reached_ms_median']:.2f} | "
            f"{r['in_process_spread_ms_median']:.2f} | {r['executions_total']} ({r['rounds']}) | "
            f"{r['errors']} / {r['fallbacks']} |"
        )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rust", required=True)
    ap.add_argument("--stampede", required=True)
    ap.add_argument("--python-hit")
    ap.add_argument("--cluster-rust")
    ap.add_argument("--cluster-hit")
    ap.add_argument("--cluster-stampede")
    ap.add_argument("--meta", action="append", default=[], help="KEY=VALUE added to the header")
    ap.add_argument("--json", required=True)
    ap.add_argument("--md", required=True)
    args = ap.parse_args()
    rust, stampede, pyhit = _load(args.rust), _load(args.stampede), _load(args.python_hit)
    cluster_rust, cluster_hit = _load(args.cluster_rust), _load(args.cluster_hit)
    cluster_stampede = _load(args.cluster_stampede)
    assert rust is not None and stampede is not None
    meta: dict[str, Any] = dict(m.split("=", 1) for m in args.meta)
    meta.update(
        {
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
            f"{platform.system()} {platform.release()}",
            "python": platform.python_version(),
            "redis_server": rust.get("redis_version"),
        }
    )

    # The goal's comparison: the tier's hit against a GET on the same kind of connection.
    hit_goal = []
    for r in rust["results"]:
        if r["case"] == "coopcache shared-tier hit":
            hit_goal.append(
                {
                    "payload_bytes": r["payload_bytes"],
                    "signed": r["signed"],
                    "callers": r["callers"],
                    "ratio": r["vs_raw_get"],
                    "met": r["vs_raw_get"] <= HIT_GOAL,
                }
            )
    coop = next(r for r in stampede["results"] if r["contender"] == "coopcache")
    stampede_goal = {
        "last_waiter_ms_median": coop["last_waiter_ms_median"],
        "last_waiter_ms_max": coop["last_waiter_ms_max"],
        "met": coop["last_waiter_ms_median"] < STAMPEDE_GOAL_MS,
    }
    out = {
        "meta": meta,
        "goals": {
            "hit_vs_raw_get_max": HIT_GOAL,
            "hit": hit_goal,
            "stampede_ms_max": STAMPEDE_GOAL_MS,
            "stampede": stampede_goal,
        },
        "rust_hit": rust,
        "python_hit": pyhit,
        "stampede": stampede,
        "cluster": {"rust_hit": cluster_rust, "python_hit": cluster_hit, "stampede": cluster_stampede},
    }
    with open(args.json, "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")

    md = ["# Shared mode (Redis) benchmarks", ""]
    md.append("; ".join(f"{k}: {v}" for k, v in meta.items()) + ".")
    md += ["", "## A shared-tier hit against a raw GET (Rust)", ""]
    md.append(
        f"Local tier empty, value in Redis; {rust['reads_per_round']} reads a round, {rust['rounds']} "
        f"rounds, the cases interleaved in each (a fresh reader cache per round). µs/read: the "
        f"median of the rounds' means. Raw reads: {rust['client']}. `vs raw GET`: the median "
        f"over rounds of the case's mean over the raw GET's mean in the same round and group "
        f"(goal: at most {HIT_GOAL}x); `p50 vs raw`: the same for the per-read medians."
    )
    md += [""] + _hit_table(rust["results"], with_signed=True) + [""]

    def _goal(g: dict[str, Any]) -> str:
        what = f"{g['payload_bytes']} B" + (" signed" if g["signed"] else "")
        what += "" if g["callers"] == 1 else f" x{g['callers']} callers"
        return f"{what} {g['ratio']:.2f}x {'met' if g['met'] else 'NOT met'}"

    md.append(f"Goal (≤ {HIT_GOAL}x): " + ", ".join(_goal(g) for g in hit_goal) + ".")
    if pyhit:
        md += ["", "## The same from Python", ""]
        md.append(
            f"A new process per round (local tier empty); {pyhit['reads_per_round']} reads a round, "
            f"{pyhit['rounds']} rounds. Raw reads: {pyhit['client']}."
        )
        md += [""] + _hit_table(pyhit["results"], with_signed=False)
    md += ["", "## Cross-process stampede (Python)", ""]
    md.append(
        f"{stampede['procs']} processes x {stampede['threads']} callers (unless the callers "
        f"column says otherwise) on one cold key, "
        f"the computation sleeps {stampede['compute_s'] * 1000:.0f} ms; latency from the moment "
        f"the (first) computing function returned to a caller's return, on CLOCK_MONOTONIC "
        f"across processes; "
        f"{coop['rounds']} rounds after a warm-up round (goal: the last waiter under "
        f"{STAMPEDE_GOAL_MS:.0f} ms for coopcache)."
    )
    md += [""] + _stampede_table(stampede)
    md += [
        "",
        f"Goal (< {STAMPEDE_GOAL_MS:.0f} ms): coopcache's last waiter, median "
        f"{coop['last_waiter_ms_median']:.2f} ms (max {coop['last_waiter_ms_max']:.2f} ms): "
        f"{'met' if stampede_goal['met'] else 'NOT met'}.",
        "",
    ]
    if cluster_rust or cluster_hit or cluster_stampede:
        md += ["## On a Redis Cluster", ""]
        md.append(
            "Six redis-server nodes on loopback (three masters, a replica each), the same "
            "machine; the caches configured with the `redis+cluster://` URL of every node."
        )
    if cluster_rust:
        md += ["", "### A shared-tier hit against a raw GET (Rust)", ""]
        md.append(
            f"As above; {cluster_rust['reads_per_round']} reads a round, {cluster_rust['rounds']} "
            f"rounds. Raw reads: {cluster_rust['client']} (the rows say ConnectionManager and "
            f"Connection: here their cluster counterparts)."
        )
        md += [""] + _hit_table(cluster_rust["results"], with_signed=True)
    if cluster_hit:
        md += ["", "### A shared-tier hit against a raw GET (Python)", ""]
        md.append(
            f"As above; {cluster_hit['reads_per_round']} reads a round, {cluster_hit['rounds']} "
            f"rounds. Raw reads: {cluster_hit['client']}."
        )
        md += [""] + _hit_table(cluster_hit["results"], with_signed=False)
    if cluster_stampede:
        md += ["", "### Cross-process stampede (Python)", ""]
        md.append(
            f"As above: {cluster_stampede['procs']} processes x {cluster_stampede['threads']} "
            f"callers, the computation sleeps {cluster_stampede['compute_s'] * 1000:.0f} ms; "
            f"dogpile.cache on its redis_cluster backend."
        )
        md += [""] + _stampede_table(cluster_stampede) + [""]
    with open(args.md, "w") as f:
        f.write("\n".join(md))
    sys.stdout.write("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
