#!/usr/bin/env bash
# Shared mode (Redis) benchmarks of issue 5, on a redis-server of its own on loopback:
#   1. a shared-tier hit against a raw GET, in Rust (core/examples/bench_shared.rs) and Python (hit.py);
#   2. a cross-process stampede, coopcache against dogpile.cache's distributed lock (stampede.py);
#   3. all three again on a Redis Cluster of six nodes on loopback (on_cluster.py; issue 12), the
#      raw reads through the cluster clients (the redis crate's, redis-py's RedisCluster),
#      dogpile.cache on its cluster backend;
#   4. what each of 16 processes receives from the cache's channels, on one Redis and on a
#      Redis Cluster (fanout.sh, which starts its own servers).
# Writes bench/results/shared.json and shared.md (and fanout.sh's shared-fanout.md).
# Usage: bash bench/shared/run.sh <python-of-a-venv-with-coopcache-installed> [--quick]
# (--quick: a smoke run with few reads and rounds; its figures mean little.)
set -euo pipefail
PY="${1:-python3}"
QUICK="${2:-}"
# An absolute path that keeps the venv's symlink (resolving it would leave the venv).
case "$PY" in
    */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;;
    *) PY="$(command -v "$PY")" ;;
esac
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/bench/shared"
source "$HERE/cluster.sh"
REDIS_SERVER="${REDIS_SERVER:-/usr/bin/redis-server}"
[ -x "$REDIS_SERVER" ] || REDIS_SERVER="$(command -v redis-server || true)"
[ -n "$REDIS_SERVER" ] || { echo "redis-server not found (apt-get install redis-server)" >&2; exit 2; }

# The contenders' Python packages, pinned (dogpile.cache at the version the anchors measure).
"$PY" -m pip install -q dogpile.cache==1.5.0 redis==8.1.0

# Build before the server starts, so compiling does not share the machine with the measurement.
cd "$ROOT"
cargo build -q --release -p coopcache --features redis,json --example bench_shared

WORK="$(mktemp -d /tmp/coopcache-bench-shared.XXXXXX)"
REDIS_PID=""
CLUSTER_PID=""
cleanup() {
    for pid in $REDIS_PID $CLUSTER_PID; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$REDIS_SERVER" --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
URL="redis://127.0.0.1:$PORT"
for _ in $(seq 100); do
    "$PY" -c "import redis, sys; sys.exit(0 if redis.Redis(port=$PORT).ping() else 1)" 2>/dev/null && break
    kill -0 "$REDIS_PID" 2>/dev/null || { cat "$WORK/redis.log" >&2; exit 1; }
    sleep 0.1
done

if [ "$QUICK" = "--quick" ]; then
    rust_args=(--reads 300 --rounds 2)
    hit_args=(--reads 300 --rounds 2)
    stampede_args=(--rounds 2 --hold)
else
    rust_args=()
    hit_args=()
    # --hold: callers already served wait out the round, so their threads' exit and output do not
    # share the cores with the callers still waiting (stampede.py's docstring); 21 rounds for a
    # median that holds still on a 2-core VM.
    stampede_args=(--hold --rounds 21)
fi
LOAD="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "== shared-tier hit vs raw GET (Rust)" >&2
cargo run -q --release -p coopcache --features redis,json --example bench_shared -- \
    "$URL" --json "$WORK/rust.json" "${rust_args[@]}" >&2
echo "== shared-tier hit vs redis-py GET (Python)" >&2
"$PY" "$HERE/hit.py" --url "$URL" --json "$WORK/hit.json" "${hit_args[@]}" >&2
echo "== cross-process stampede (Python)" >&2
"$PY" "$HERE/stampede.py" --url "$URL" --json "$WORK/stampede.json" "${stampede_args[@]}"

# The single server stops first, so the cluster's six nodes have the machine to themselves.
kill "$REDIS_PID" && wait "$REDIS_PID" 2>/dev/null || true
REDIS_PID=""
start_cluster "$WORK/cluster.url" "$PY"
echo "== shared-tier hit vs raw GET (Rust, Redis Cluster)" >&2
cargo run -q --release -p coopcache --features redis,json --example bench_shared -- \
    "$CLUSTER_URL" --json "$WORK/cluster_rust.json" "${rust_args[@]}" >&2
echo "== shared-tier hit vs redis-py RedisCluster GET (Python, Redis Cluster)" >&2
"$PY" "$HERE/hit.py" --url "$CLUSTER_URL" --json "$WORK/cluster_hit.json" "${hit_args[@]}" >&2
echo "== cross-process stampede (Python, Redis Cluster)" >&2
"$PY" "$HERE/stampede.py" --url "$CLUSTER_URL" --json "$WORK/cluster_stampede.json" "${stampede_args[@]}"

mkdir -p "$ROOT/bench/results"
"$PY" "$HERE/report.py" --rust "$WORK/rust.json" --python-hit "$WORK/hit.json" --stampede "$WORK/stampede.json" \
    --cluster-rust "$WORK/cluster_rust.json" --cluster-hit "$WORK/cluster_hit.json" --cluster-stampede "$WORK/cluster_stampede.json" \
    --meta "date=$(date -u +%Y-%m-%dT%H:%MZ)" \
    --meta "commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --meta "load average at start=$LOAD" \
    --json "$ROOT/bench/results/shared.json" --md "$ROOT/bench/results/shared.md"
echo "== what a process receives (Rust, 16 processes)" >&2
bash "$HERE/fanout.sh" $QUICK
