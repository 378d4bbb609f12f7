#!/usr/bin/env bash
# The Python package's tests: pytest on tests/python, then mypy --strict on a usage file (the
# stubs). Usage: bash tests/python/run.sh <python-of-a-venv-with-coopcache-installed>
set -euo pipefail
PY="${1:-python3}"
# An absolute path that keeps the venv's symlink (resolving it would leave the venv).
case "$PY" in
    */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;;
    *) PY="$(command -v "$PY")" ;;
esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"
# Keep hypothesis' working files out of the tree.
HYPOTHESIS_STORAGE_DIRECTORY="$(mktemp -d)"
export HYPOTHESIS_STORAGE_DIRECTORY
trap 'rm -rf "$HYPOTHESIS_STORAGE_DIRECTORY"' EXIT
# Run from tests/python so the installed package is imported, not the source folder.
"$PY" -m pytest -q -p no:cacheprovider "$HERE"
"$PY" typing_usage.py > /dev/null
"$PY" -m mypy --strict --no-incremental --cache-dir=/dev/null typing_usage.py
