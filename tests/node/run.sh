#!/usr/bin/env bash
# The Node package's tests: node --test on tests/node, then tsc --strict on the public types.
# Run from anywhere after `npm install` at the repository root (`make test-node` does both).
set -euo pipefail
cd "$(dirname "$0")/../.."
node --test tests/node/
npx --no-install tsc --noEmit --strict -p tests/node
echo "tests/node: all passed"
