#!/usr/bin/env bash
# Costs as a cache grows (10^4 to 10^7 entries), in each language: hit latency, memory per entry
# (and, in Rust, the sweep), beside each language's plain map or lru_cache. Writes
# bench/results/growth-{rust,python,node}.{md,json}; `make bench-charts` draws
# docs/bench/growth.png. Usage: bash bench/growth/run.sh PYTHON [--max N]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="$1"
shift
max=()
[ "${1:-}" = --max ] && max=(--max "$2")
R="$ROOT/bench/results"
mkdir -p "$R"
cd "$ROOT"
cargo run -q --release -p coopcache --example bench_growth -- --json "$R/growth-rust.json" | tee "$R/growth-rust.md"
"$PY" bench/growth/python_growth.py --json "$R/growth-python.json" "${max[@]}" | tee "$R/growth-python.md"
node --expose-gc bench/growth/node_growth.mjs --json "$R/growth-node.json" "${max[@]}" | tee "$R/growth-node.md"
