#!/usr/bin/env bash
# The Node `hit` row in many memory layouts (bench/node/layouts.mjs): one harness copy, renamed to
# paths of 48 lengths (from 14: /tmp/cc.XXXX/d, 15: .../dd, ...; `make bench`'s own harness
# directory, a `mktemp -d` name, is 19 long). Usage (after `npm install && npm run build` at the
# repository root): bash bench/node/layouts.sh [layouts.mjs options, e.g. --from 1 --to 16 --reps 2]
# Writes bench/results/node-layouts.md and node-layouts.json.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
. "$ROOT/bench/node/harness.sh"
WORK="$(mktemp -d /tmp/cc.XXXX)" # short, so that the lengths start below run.sh's
trap 'rm -rf "$WORK"' EXIT
mkdir "$WORK/h"
harness_copy "$WORK/h"
harness_link "$WORK/h"
mkdir -p "$ROOT/bench/results"
echo "node $(node --version)" >&2
node "$ROOT/bench/node/layouts.mjs" "$WORK/h" "$ROOT/bench/results/node-layouts" "$@"
