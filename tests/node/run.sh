#!/usr/bin/env bash
# The Node package's tests: node --test on tests/node, then tsc --strict on the public types.
# Run from anywhere after `npm install` at the repository root (`make test-node` does both).
set -euo pipefail
cd "$(dirname "$0")/../.."
# A passing run prints nothing alarming: a test that expects a warning (a full cache, a shared
# tier going down) listens for the event instead of letting it print.
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
node --test tests/node/ 2>&1 | tee "$out"
if grep -E '\[COOPCACHE_[A-Z]+\] Warning' "$out"; then
    echo "tests/node: the run printed the coopcache warnings above; listen for those events in the tests" >&2
    exit 1
fi
npx --no-install tsc --noEmit --strict -p tests/node
echo "tests/node: all passed"
