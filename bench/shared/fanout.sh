#!/usr/bin/env bash
# What each process receives from the shared tier's channels (issue 12): 16 processes, each
# computing 200 keys of its own (1 KiB values) after 4 hot keys they all ask for, on one
# redis-server and on a six-node Redis Cluster (three masters, a replica each), all on
# loopback and started here (core/examples/bench_fanout.rs runs the processes).
# Writes bench/results/shared-fanout.md and shared-fanout-{single,cluster}.json.
# Usage: bash bench/shared/fanout.sh [--quick]   (--quick: 4 processes, 20 keys each;
# COOPCACHE_FEATURES overrides the features it builds with, redis,json by default)
set -euo pipefail
QUICK="${1:-}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/bench/shared/cluster.sh"
REDIS_SERVER="${REDIS_SERVER:-$(command -v redis-server || true)}"
[ -n "$REDIS_SERVER" ] || { echo "redis-server not found (apt-get install redis-server)" >&2; exit 2; }
cd "$ROOT"
cargo build -q --release -p coopcache --features "${COOPCACHE_FEATURES:-redis,json}" --example bench_fanout
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/bench_fanout"
args=()
[ "$QUICK" = "--quick" ] && args=(--procs 4 --keys 20)

WORK="$(mktemp -d /tmp/coopcache-bench-fanout.XXXXXX)"
PIDS=()
CLUSTER_PID=""
cleanup() {
    for p in "${PIDS[@]}" $CLUSTER_PID; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}" $CLUSTER_PID; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
serve() { # serve PORT [ARGS...]: a redis-server on loopback, its pid in PIDS
    local port="$1"; shift
    (cd "$WORK" && exec "$REDIS_SERVER" --port "$port" --bind 127.0.0.1 --save '' --appendonly no "$@" \
        >"$WORK/redis-$port.log" 2>&1) &
    PIDS+=($!)
    for _ in $(seq 100); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    cat "$WORK/redis-$port.log" >&2
    exit 1
}

mkdir -p bench/results
OUT=bench/results/shared-fanout.md
{
    echo "# What a process receives: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo
} >"$OUT"

echo "== one redis-server" >&2
PORT="$(free_port)"
serve "$PORT"
{ echo "## One Redis"; echo; "$BIN" "redis://127.0.0.1:$PORT" --json bench/results/shared-fanout-single.json "${args[@]}"; echo; } >>"$OUT"

echo "== a six-node cluster" >&2
# The tests' cluster (tests/redis_server.py, through on_cluster.py), which picks ports whose
# cluster bus port (10000 higher) is a port too.
start_cluster "$WORK/cluster.url"
{ echo "## Redis Cluster (3 masters, 3 replicas)"; echo; "$BIN" "$CLUSTER_URL" --json bench/results/shared-fanout-cluster.json "${args[@]}"; } >>"$OUT"
cat "$OUT"
