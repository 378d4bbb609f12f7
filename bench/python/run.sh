#!/usr/bin/env bash
# The anchor benchmark (../shared/bench/python) with coopcache as a contender.
# Usage: bash bench/python/run.sh <python-of-a-venv-with-coopcache-installed> [anchors.py options]
# e.g.   bash bench/python/run.sh .venv/bin/python --rounds 3
# Writes the tables to bench/results/python.md and every figure to bench/results/python.json
# (`make bench-charts` draws docs/bench/python.png from it; a --json option of yours wins).
# The harness is copied to a temp dir (it is not edited); the anchors' packages are installed
# into the given venv at the versions the harness's README measured.
set -euo pipefail
PY="${1:-python3}"
shift || true
# An absolute path that keeps the venv's symlink (resolving it would leave the venv).
case "$PY" in
    */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;;
    *) PY="$(command -v "$PY")" ;;
esac
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HARNESS="${COOPCACHE_BENCH_HARNESS:-$ROOT/../shared/bench/python}"
if [ ! -f "$HARNESS/anchors.py" ]; then
    echo "anchor harness not found at $HARNESS (set COOPCACHE_BENCH_HARNESS)" >&2
    exit 2
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cp -r "$HARNESS"/. "$WORK"/
"$PY" -m pip install -q cachebox==6.2.10 moka-py==0.5.0 theine==2.0.0 cachetools==8.0.1 dogpile.cache==1.5.0
ADAPTER="$ROOT/bench/python/coopcache_contender.py"
RESULTS="$ROOT/bench/results"
mkdir -p "$RESULTS"
cd "$WORK"
"$PY" anchors.py \
    --contender "coopcache=$ADAPTER:CONTENDER" \
    --contender "coopcache-keyfn=$ADAPTER:KEYED" \
    --json "$RESULTS/python.json" \
    "$@" | tee "$RESULTS/python.md"
